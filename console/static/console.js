// outpost console: progressive enhancement only. Every page reads without
// this script; it adds Copy, live filtering and the Connectors refresh.
"use strict";

function flash(btn, text) {
  var out = btn.parentNode.querySelector(".copied");
  if (out) { out.textContent = text; }
}

function copyText(btn, text) {
  return navigator.clipboard.writeText(text).then(function () { flash(btn, "Copied"); },
    function () { flash(btn, "Copy failed: select the key and copy it by hand"); });
}

document.addEventListener("click", function (ev) {
  var btn = ev.target.closest("button.copy");
  if (!btn || btn.disabled) { return; }
  if (btn.dataset.copyFrom) {
    copyText(btn, document.getElementById(btn.dataset.copyFrom).value);
    return;
  }
  if (btn.dataset.copyUrl) {
    var body = new URLSearchParams();
    body.set("csrf", btn.dataset.csrf);
    fetch(btn.dataset.copyUrl, { method: "POST", body: body, credentials: "same-origin",
      headers: { "X-Requested-With": "console" } })
      .then(function (r) { return r.text().then(function (t) { if (!r.ok) { throw new Error(t); } return t; }); })
      .then(function (t) { return copyText(btn, t); })
      .catch(function (e) { flash(btn, e.message); });
  }
});

function filterTable(input) {
  var table = document.getElementById(input.dataset.filter);
  if (!table) { return; }
  var q = input.value.trim().toLowerCase();
  table.querySelectorAll("tbody tr").forEach(function (tr) {
    tr.hidden = q !== "" && tr.dataset.filterText.toLowerCase().indexOf(q) < 0;
  });
}

document.addEventListener("input", function (ev) {
  if (ev.target.dataset && ev.target.dataset.filter) { filterTable(ev.target); }
});

function poll(tbody) {
  var every = parseInt(tbody.dataset.interval, 10) || 5000;
  setInterval(function () {
    fetch(tbody.dataset.poll, { credentials: "same-origin", headers: { "X-Requested-With": "console" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        // The server escaped every value; parse as a table body, never as script.
        var doc = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
        var fresh = doc.querySelector("tbody");
        tbody.replaceChildren.apply(tbody, Array.from(fresh.childNodes));
        tbody.dataset.updated = String(Date.now());
      })
      .catch(function () { /* keep the last rows; the next poll tries again */ });
  }, every);
}

document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("input[data-filter]").forEach(filterTable);
});
