// Every table of the page sorts by a click on a header: numbers by their leading value (so
// "0.672 [0.671, 0.673] (1)" sorts by 0.672), text otherwise; a second click reverses.
// PAGE.html#selftest&table=N&sort=HEADER clicks that header of the N-th table (from 0) and writes
// the first cell of each row, in order, into <pre id="selftest">.
(function () {
  "use strict";
  var NUMBER = /^\s*[*_`]*([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)/i;

  function key(cell) {
    var text = cell.textContent.trim(), m = NUMBER.exec(text);
    return m ? { n: parseFloat(m[1]), t: text } : { n: NaN, t: text.toLowerCase() };
  }

  function sortTable(table, index, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      return [key(row.cells[index] || row.cells[0]), i, row];
    });
    var sign = descending ? -1 : 1;
    rows.sort(function (a, b) {
      var x = a[0], y = b[0];
      if (!isNaN(x.n) && !isNaN(y.n)) { if (x.n !== y.n) { return sign * (x.n - y.n); } }
      else if (isNaN(x.n) !== isNaN(y.n)) { return isNaN(x.n) ? 1 : -1; }
      else if (x.t !== y.t) { return sign * (x.t < y.t ? -1 : 1); }
      return a[1] - b[1];
    });
    rows.forEach(function (r) { body.appendChild(r[2]); });
  }

  var tables = Array.prototype.slice.call(document.querySelectorAll("table"));
  tables.forEach(function (table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    headers.forEach(function (th, index) {
      th.title = "click to sort";
      th.addEventListener("click", function () {
        var descending = th.classList.contains("asc");
        headers.forEach(function (h) { h.classList.remove("asc", "desc"); });
        th.classList.add(descending ? "desc" : "asc");
        sortTable(table, index, descending);
      });
    });
  });

  var hash = window.location.hash.replace(/^#/, "").split("&");
  if (hash[0] === "selftest") {
    var params = {};
    hash.slice(1).forEach(function (part) {
      var eq = part.indexOf("=");
      params[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1));
    });
    var table = tables[parseInt(params.table || "0", 10)];
    if (params.sort) {
      Array.prototype.slice.call(table.tHead.rows[0].cells).forEach(function (th) {
        if (th.textContent.trim() === params.sort) { th.click(); }
      });
    }
    document.getElementById("selftest").textContent = JSON.stringify({
      tables: tables.length,
      first: Array.prototype.slice.call(table.tBodies[0].rows).map(function (r) { return r.cells[1] ? r.cells[1].textContent.trim() : ""; }),
      rows: table.tBodies[0].rows.length
    });
  }
})();
