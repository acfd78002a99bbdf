/* Small behaviours of the staff pages. */
(function () {
  "use strict";
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.getAttribute("data-copy"));
      input.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value);
      } else {
        document.execCommand("copy");
      }
      button.textContent = "Copied";
    });
  });
  // The customer list: the header box ticks every row on the page.
  document.querySelectorAll("[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      var table = box.closest("table");
      table.querySelectorAll('tbody input[name="selected"]').forEach(function (row) {
        row.checked = box.checked;
      });
    });
  });
  // "Edit" and "Record a sale" open their folded section before jumping to it.
  document.querySelectorAll("[data-open]").forEach(function (link) {
    link.addEventListener("click", function () {
      var target = document.getElementById(link.getAttribute("data-open"));
      if (target) { target.open = true; }
    });
  });
})();
