// Live updates of the sessions table: the server sends the table rows as a
// server-sent event whenever they change. Without JavaScript the page is
// complete as served; reload it to refresh.
(function () {
  var table = document.getElementById("live");
  if (!table || !window.EventSource) { return; }
  var body = table.querySelector("tbody");
  var es = new EventSource(table.getAttribute("data-stream"));
  es.addEventListener("sessions", function (e) { body.innerHTML = e.data; });
  es.addEventListener("end", function () { es.close(); });
})();
