/* Follows a segmentation run without reloading: polls its JSON status every 2 seconds,
   moves the bar and the sentence, and reloads the page once when the run has ended, so
   every figure on it is the new run's. */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var RETRY_MS = 4000;
  var MAX_FAILURES = 5;
  var RELOAD_AFTER_MS = 1500;

  var box = document.querySelector("[data-run-progress]");
  if (!box || box.dataset.active !== "true" || !window.fetch) {
    return;
  }
  var barBox = box.querySelector(".run-progress-bar");
  var bar = barBox.querySelector("span");
  var words = box.querySelector(".run-progress-words");
  var failures = 0;

  function show(state) {
    bar.style.width = state.percent + "%";
    barBox.setAttribute("aria-valuenow", state.percent);
    words.textContent = state.title + ": " + state.words;
    box.dataset.status = state.status;
    box.dataset.active = state.active ? "true" : "false";
  }

  function ended(state) {
    box.classList.add("ended", state.status);
    window.setTimeout(function () { window.location.reload(); }, RELOAD_AFTER_MS);
  }

  function poll() {
    fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (state) {
        failures = 0;
        show(state);
        if (state.active) {
          window.setTimeout(poll, POLL_MS);
        } else {
          ended(state);
        }
      })
      .catch(function () {
        failures += 1;
        if (failures < MAX_FAILURES) {
          window.setTimeout(poll, RETRY_MS);
        } else {
          words.textContent = "The progress cannot be read right now; reload the page to see where the run is.";
        }
      });
  }

  window.setTimeout(poll, POLL_MS);
})();
