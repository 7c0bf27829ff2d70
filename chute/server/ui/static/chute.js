// chute UI: copy buttons. Progressive enhancement only: without JavaScript the
// buttons stay hidden and the references are plain text to select and copy.
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
  document.addEventListener("DOMContentLoaded", function () { reveal(document); });
  // Content swapped in by htmx (boosted navigation, live run updates).
  document.addEventListener("htmx:load", function (ev) { reveal(ev.target); });
})();
