// While a sync is queued or running, reload just the runs table every few seconds
// (a whole-page reload would discard edits in the form).
(function () {
  var section = document.getElementById("sync-runs");
  function active() {
    var body = document.getElementById("sync-runs-body");
    return body && body.getAttribute("data-active") === "true";
  }
  function poll() {
    if (!active()) { return; }
    fetch(section.getAttribute("data-url"), {credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html) { document.getElementById("sync-runs-body").outerHTML = html; }
        setTimeout(poll, 3000);
      })
      .catch(function () { setTimeout(poll, 10000); });
  }
  setTimeout(poll, 3000);
})();
