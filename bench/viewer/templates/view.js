// Sorting and filtering of the viewer's sample table; no libraries, works from file://.
// A header with data-key sorts by its column (first click: worst first, again: the other way).
// index.html#selftest&sort=miou&category=X&text=Y performs those actions as a user would (a click on
// the header, a choice in the selects) and writes the visible rows into <pre id="selftest">.
(function () {
  "use strict";
  var table = document.getElementById("samples");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var headers = Array.prototype.slice.call(table.tHead.querySelectorAll("th[data-key]"));
  var category = document.getElementById("category");
  var text = document.getElementById("text");
  var worst = document.getElementById("worst");
  var count = document.getElementById("count");

  // each keyed header's column index in the body rows (the map cells included)
  var columns = {};
  (function () {
    var first = table.tHead.rows[0].cells, second = table.tHead.rows[1].cells;
    var index = 0, j = 0;
    for (var i = 0; i < first.length; i++) {
      var span = first[i].colSpan || 1;
      if (first[i].rowSpan === 2) { columns[first[i].getAttribute("data-key")] = index; index += 1; continue; }
      for (var s = 0; s < span; s++, j++) {
        var key = second[j].getAttribute("data-key");
        if (key) { columns[key] = index; }
        index += 1;
      }
    }
  })();

  function value(row, key) {
    if (key === "id" || key === "category" || key === "phrase") {
      return row.getAttribute("data-" + key);
    }
    var raw = row.cells[columns[key]].getAttribute("data-v");
    return raw === "" || raw === null ? NaN : parseFloat(raw);
  }

  function sortBy(key, descending) {
    var header = headers.filter(function (h) { return h.getAttribute("data-key") === key; })[0];
    var text = header.getAttribute("data-type") === "text";
    var sign = descending ? -1 : 1;
    var keyed = rows.map(function (row, i) { return [value(row, key), i, row]; });
    keyed.sort(function (a, b) {
      var x = a[0], y = b[0];
      if (!text) {  // missing values last, whatever the direction
        if (isNaN(x) && isNaN(y)) { return a[1] - b[1]; }
        if (isNaN(x)) { return 1; }
        if (isNaN(y)) { return -1; }
      }
      if (x < y) { return -sign; }
      if (x > y) { return sign; }
      return a[1] - b[1];
    });
    rows = keyed.map(function (k) { return k[2]; });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (row) { fragment.appendChild(row); });
    body.appendChild(fragment);
    headers.forEach(function (h) { h.classList.remove("asc", "desc"); h.removeAttribute("data-dir"); });
    header.classList.add(descending ? "desc" : "asc");
    header.setAttribute("data-dir", descending ? "desc" : "asc");
  }

  function worstFirst(key) {
    var header = headers.filter(function (h) { return h.getAttribute("data-key") === key; })[0];
    return header.getAttribute("data-lower") === "1";  // lower is better: worst is highest
  }

  headers.forEach(function (h) {
    h.addEventListener("click", function () {
      var key = h.getAttribute("data-key");
      var was = h.getAttribute("data-dir");
      var descending = was ? was === "asc" : (h.getAttribute("data-type") === "text" ? false : worstFirst(key));
      sortBy(key, descending);
    });
  });

  function filter() {
    var c = category.value, t = text.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (row) {
      var keep = (!c || row.getAttribute("data-category") === c) &&
                 (!t || row.getAttribute("data-phrase").indexOf(t) !== -1);
      row.classList.toggle("hidden", !keep);
      if (keep) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " samples";
  }

  category.addEventListener("change", filter);
  text.addEventListener("input", filter);
  worst.addEventListener("change", function () {
    if (worst.value) { sortBy(worst.value, worstFirst(worst.value)); }
  });

  function selftest() {
    var hash = window.location.hash.replace(/^#/, "");
    if (hash.split("&")[0] !== "selftest") { return; }
    var params = {};
    hash.split("&").slice(1).forEach(function (part) {
      var eq = part.indexOf("=");
      params[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1));
    });
    if (params.sort) {
      var key = params.sort.indexOf(":") === -1 ? "r0:" + params.sort : params.sort;
      var header = headers.filter(function (h) { return h.getAttribute("data-key") === key; })[0];
      if (header) { header.click(); }
    }
    if (params.category !== undefined) {
      category.value = params.category;
      category.dispatchEvent(new Event("change"));
    }
    if (params.text !== undefined) {
      text.value = params.text;
      text.dispatchEvent(new Event("input"));
    }
    var visible = rows.filter(function (r) { return !r.classList.contains("hidden"); });
    var out = document.getElementById("selftest");
    out.textContent = JSON.stringify({
      order: visible.map(function (r) { return r.getAttribute("data-id"); }),
      visible: visible.length, rows: rows.length, count: count.textContent,
      images: document.querySelectorAll("td.map img").length
    });
  }
  selftest();
})();
