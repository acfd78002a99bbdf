// The import job page: follows the background check or import, then shows its outcome.
(function () {
  "use strict";
  var box = document.getElementById("import-progress");
  if (!box) {
    return;
  }
  var url = box.dataset.statusUrl;
  var bar = box.querySelector("progress");
  var text = box.querySelector(".import-progress-text");
  var label = document.getElementById("import-status");

  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (job) {
        if (job.status !== box.dataset.status) {
          // A new step (preview ready, import done, failed): the page shows it in full.
          window.location.reload();
          return;
        }
        bar.value = job.progress;
        text.textContent = job.message;
        label.textContent = job.status_label;
        window.setTimeout(poll, 1000);
      })
      .catch(function () {
        window.setTimeout(poll, 3000); // the server restarting: try again a little later
      });
  }

  window.setTimeout(poll, 500);
})();
