// Chat page behaviour that needs a script: the stream cursor, the thinking block,
// the composer's keys, autoscroll, copy buttons and local times. What a response
// can say (a fresh composer, a new title, the conversation list) comes from the
// server as out-of-band swaps, and what a selector can say is in chat.css.
// Runs under a strict CSP: no inline code, no eval.
(function () {
  "use strict";

  function streamingMessage() {
    return document.querySelector('.msg.assistant[data-status="streaming"]');
  }

  // htmx-ext-sse opens a brand-new EventSource after a failed connection, which
  // forgets Last-Event-ID: keep the cursor in the sse-connect URL instead.
  document.addEventListener("htmx:sseMessage", function (evt) {
    var id = evt.detail && evt.detail.lastEventId;
    var source = evt.target.closest("[sse-connect]");
    if (!id || !source) return;
    var url = new URL(source.getAttribute("sse-connect"), window.location.href);
    url.searchParams.set("after", id);
    source.setAttribute("sse-connect", url.pathname + url.search);
  });

  // A lost connection is retried by the extension; say so instead of "Generating…".
  document.addEventListener("htmx:sseError", function (evt) {
    var message = evt.target.closest && evt.target.closest(".msg.assistant");
    if (message) message.classList.add("reconnecting");
  });
  document.addEventListener("htmx:sseOpen", function (evt) {
    var message = evt.target.closest && evt.target.closest(".msg.assistant");
    if (message) message.classList.remove("reconnecting");
  });

  // A reasoning model's thinking block is open while it thinks and closes when
  // the answer's text starts: its label, swapped in by the stream, says which.
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var label = evt.target;
    if (!label.classList || !label.classList.contains("thinking-label")) return;
    var block = label.closest("details.thinking");
    if (block) block.open = label.dataset.thinking === "true";
  });

  // Composer: Enter sends, Shift+Enter is a new line; disabled while an answer
  // is being written (Stop takes the place of Send: chat.css).
  function syncComposer() {
    var textarea = document.querySelector("#composer textarea");
    if (!textarea) return;
    var wasBusy = textarea.disabled;
    textarea.disabled = streamingMessage() !== null;
    // Give the keyboard back when the answer ends, unless the reader moved on.
    if (wasBusy && !textarea.disabled && (document.activeElement === document.body || document.activeElement === null)) {
      textarea.focus();
    }
  }

  function grow(textarea) {
    textarea.style.height = "auto";
    textarea.style.height = Math.min(textarea.scrollHeight, 240) + "px";
  }

  document.addEventListener("keydown", function (evt) {
    if (evt.key === "Escape") {
      closeMenus(null);
      var toggle = document.getElementById("nav-toggle");
      if (toggle) toggle.checked = false;
    }
    var textarea = evt.target;
    if (!textarea.matches || !textarea.matches("#composer textarea")) return;
    if (evt.key === "Enter" && !evt.shiftKey && !evt.isComposing) {
      evt.preventDefault();
      if (textarea.value.trim() && !textarea.disabled) textarea.form.requestSubmit();
    }
  });
  document.addEventListener("input", function (evt) {
    if (evt.target.matches && evt.target.matches("#composer textarea")) grow(evt.target);
  });

  // The text as the reader sees it, without the page's own controls and tool cards.
  function visibleText(node) {
    var extras = Array.prototype.filter.call(node.querySelectorAll(".copy-code, .tool-card"), function (el) {
      return !el.hidden;
    });
    extras.forEach(function (el) { el.hidden = true; });
    var text = node.innerText;
    extras.forEach(function (el) { el.hidden = false; });
    return text.replace(/\n+$/, "");
  }

  function copyText(button, node) {
    var text = visibleText(node);
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectForCopy(node, done); });
    } else {
      selectForCopy(node, done);
    }
  }

  // Without the async clipboard (a plain-http address other than localhost):
  // select the text and use the old copy command, which still works there.
  function selectForCopy(node, done) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try {
      if (document.execCommand("copy")) done();
    } catch (e) { /* the text stays selected for Ctrl+C */ }
  }

  document.addEventListener("click", function (evt) {
    var copy = evt.target.closest("[data-copy-target], .copy-code");
    if (copy) {
      var node = copy.classList.contains("copy-code")
        ? copy.parentElement.querySelector("pre")
        : document.querySelector(copy.dataset.copyTarget);
      if (node) copyText(copy, node);
      return;
    }
    if (evt.target.closest(".jump-latest")) {
      following = true;
      follow();
      return;
    }
    closeMenus(evt.target.closest(".conv-menu"));
  });

  // Conversation menus: one open at a time, closed by a click elsewhere or Escape.
  function closeMenus(keep) {
    document.querySelectorAll(".conv-menu[open]").forEach(function (menu) {
      if (menu !== keep) menu.open = false;
    });
  }

  // An answer started here (a prompt sent or edited, Continue, Retry) is followed to its end.
  // The form that asked has been swapped out by then: htmx tells its parent, and
  // keeps the form in requestConfig.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var asker = evt.detail.requestConfig.elt;
    if (evt.detail.xhr.status === 200 && asker.matches("#composer, .msg-actions form:has(.continue, .retry), .edit-prompt form")) {
      following = true;
    }
  });

  // Autoscroll follows the answer until the reader scrolls up; only the
  // reader's own scrolling (wheel, touch, keys, scrollbar) stops it, never a
  // jump caused by content being replaced.
  var following = true;
  var lastGesture = 0;
  function scroller() { return document.getElementById("messages"); }
  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 48; }

  function follow() {
    var el = scroller();
    if (!el) return;
    if (following) el.scrollTop = el.scrollHeight;
    var jump = document.querySelector(".jump-latest");
    if (jump) jump.hidden = following || atBottom(el);
  }

  var pending = false;
  function followSoon() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () {
      pending = false;
      follow();
    });
  }

  function gesture() { lastGesture = Date.now(); }
  ["wheel", "touchmove"].forEach(function (type) {
    document.addEventListener(type, function (evt) {
      if (evt.target.closest && evt.target.closest("#messages")) gesture();
    }, { passive: true, capture: true });
  });
  // A press on the scroller itself (not on its content) is its scrollbar.
  document.addEventListener("pointerdown", function (evt) {
    if (evt.target === scroller()) gesture();
  }, true);
  document.addEventListener("keydown", function (evt) {
    if (["PageUp", "PageDown", "ArrowUp", "ArrowDown", "Home", "End", " "].indexOf(evt.key) >= 0) gesture();
  }, true);

  document.addEventListener("scroll", function (evt) {
    var el = scroller();
    if (evt.target !== el) return;
    if (atBottom(el)) following = true;
    else if (Date.now() - lastGesture < 1000) following = false;
    var jump = document.querySelector(".jump-latest");
    if (jump) jump.hidden = following || atBottom(el);
  }, true);

  function decorate(root) {
    // A streaming answer's code block can be copied once it is closed (highlighted and settled).
    root.querySelectorAll(".msg-body:not(.live) .highlight, .md-settled .highlight, .msg-body:not(.live) pre:not(.tool-result):not(.tool-args pre)").forEach(function (block) {
      if (block.closest(".tool-card")) return;
      var box = block.classList.contains("highlight") ? block : block.parentElement.classList.contains("highlight") ? null : block;
      if (!box || box.querySelector(".copy-code") || box.parentElement.querySelector(":scope > .copy-code")) return;
      if (box.tagName === "PRE") {
        var wrap = document.createElement("div");
        wrap.className = "code-wrap";
        box.parentNode.insertBefore(wrap, box);
        wrap.appendChild(box);
        box = wrap;
      }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy code");
      box.appendChild(button);
    });
  }

  // Times are written by the server in its own zone; show them in the reader's.
  var timeFormat = { hour: "2-digit", minute: "2-digit" };
  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (node) {
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when)) return;
      var now = new Date();
      var text;
      if (when.toDateString() === now.toDateString()) {
        text = when.toLocaleTimeString([], timeFormat);
      } else if (when.getFullYear() === now.getFullYear()) {
        text = when.toLocaleDateString([], { month: "short", day: "numeric" });
      } else {
        text = when.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
      }
      node.textContent = text;
      node.title = when.toLocaleString();
      node.dataset.local = "";
    });
  }

  function refresh() {
    decorate(document);
    localTimes(document);
    syncComposer();
    followSoon();
  }

  document.addEventListener("htmx:afterSettle", refresh);
  document.addEventListener("htmx:oobAfterSwap", followSoon);
  document.addEventListener("DOMContentLoaded", function () {
    refresh();
    var el = scroller();
    if (el) {
      // Text arriving, cards changing, the final render: keep the end in view.
      new MutationObserver(followSoon).observe(el, { childList: true, subtree: true, characterData: true });
    }
  });
})();
