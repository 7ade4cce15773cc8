// Live figures: each server-sent "sections" event carries the new HTML of the page's
// sections (rendered by the same macros as the page), keyed by their element ids.
(function () {
  "use strict";
  var url = document.body.dataset.events;
  if (!url || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var source = new EventSource(url);
  source.onopen = function () { status.textContent = "live"; };
  source.onerror = function () { status.textContent = "reconnecting…"; };
  source.addEventListener("sections", function (event) {
    var sections = JSON.parse(event.data);
    Object.keys(sections).forEach(function (id) {
      var element = document.getElementById(id);
      if (element) { element.innerHTML = sections[id]; }
    });
    status.textContent = "live, updated " + new Date().toLocaleTimeString();
  });
})();
