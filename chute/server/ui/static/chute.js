// chute UI: copy buttons, and following a live run's logs. Progressive enhancement only:
// without JavaScript the copy buttons stay hidden (the references are plain text to select
// and copy) and run pages are complete as served.
(function () {
  "use strict";

  function reveal(root) {
    (root || document).querySelectorAll("button.copy[hidden]").forEach(function (b) { b.hidden = false; });
  }

  function copyWithSelection(text) {
    // Fallback where the async clipboard API is unavailable (plain http on another host).
    var ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.className = "offscreen";
    document.body.appendChild(ta);
    ta.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    ta.remove();
    return ok;
  }

  function say(button, text) {
    var out = button.nextElementSibling;
    if (!out || !out.classList.contains("copied")) { return; }
    out.textContent = text;
    clearTimeout(button._chuteTimer);
    button._chuteTimer = setTimeout(function () { out.textContent = ""; }, 4000);
  }

  function copy(button) {
    var text = button.getAttribute("data-copy") || "";
    var done = function () { say(button, "Copied"); };
    var failed = function () {
      say(button, copyWithSelection(text) ? "Copied" : "Could not copy: select the text and copy it");
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, failed);
    } else {
      failed();
    }
  }

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button.copy") : null;
    if (b) { ev.preventDefault(); copy(b); }
  });
  // Live run pages: open a stage's log when the stage starts or fails (once, so a section the
  // reader closed stays closed), and keep a log that was scrolled to its end at its end.
  var following = [];
  document.addEventListener("htmx:sseBeforeMessage", function () {
    following = Array.prototype.filter.call(document.querySelectorAll("pre.log"), function (p) {
      return p.scrollHeight - p.scrollTop - p.clientHeight < 24;
    }).map(function (p) { return p.id; });
  });
  document.addEventListener("htmx:sseMessage", function () {
    document.querySelectorAll("details.log-section[data-status]").forEach(function (d) {
      var badge = d.querySelector("summary .badge");
      var m = badge ? badge.className.match(/\bst-([a-z]+)/) : null;
      var now = m ? m[1] : "";
      if (now === d.getAttribute("data-status")) { return; }
      d.setAttribute("data-status", now);
      if (now === "running" || now === "failure" || now === "error") { d.open = true; }
    });
    following.forEach(function (id) {
      var p = document.getElementById(id);
      if (p) { p.scrollTop = p.scrollHeight; }
    });
  });
  document.addEventListener("DOMContentLoaded", function () { reveal(document); });
  // Content swapped in by htmx (boosted navigation, live run updates).
  document.addEventListener("htmx:load", function (ev) { reveal(ev.target); });
})();
