// Chat page behaviour: stream cursor, composer, autoscroll, copy buttons.
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
    follow();
  });

  // Composer: Enter sends, Shift+Enter is a new line; disabled with Stop in the
  // place of Send while an answer is being written.
  function composer() { return document.getElementById("composer"); }

  function syncComposer() {
    var form = composer();
    if (!form) return;
    var busy = streamingMessage() !== null;
    var textarea = form.querySelector("textarea");
    textarea.disabled = busy;
    form.querySelector(".send").hidden = busy;
    form.querySelector(".stop").hidden = !busy;
    form.classList.toggle("busy", busy);
    if (!busy && document.activeElement === document.body) textarea.focus();
  }

  function grow(textarea) {
    textarea.style.height = "auto";
    textarea.style.height = Math.min(textarea.scrollHeight, 240) + "px";
  }

  document.addEventListener("keydown", function (evt) {
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

  document.addEventListener("click", function (evt) {
    var stop = evt.target.closest("#composer .stop");
    if (stop) {
      var message = streamingMessage();
      if (message) htmx.ajax("POST", message.dataset.stopUrl, { source: stop, swap: "none" });
      return;
    }
    var copy = evt.target.closest("[data-copy-target], .copy-code");
    if (copy) {
      var node = copy.classList.contains("copy-code")
        ? copy.parentElement.querySelector("pre")
        : document.querySelector(copy.dataset.copyTarget);
      if (node && navigator.clipboard) {
        navigator.clipboard.writeText(node.innerText).then(function () {
          copy.textContent = "Copied";
          setTimeout(function () { copy.textContent = "Copy"; }, 1500);
        });
      }
      return;
    }
    if (evt.target.closest(".jump-latest")) {
      following = true;
      follow();
    }
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = composer();
    if (evt.detail.elt === form && evt.detail.successful && evt.detail.xhr.status === 200) {
      var textarea = form.querySelector("textarea");
      textarea.value = "";
      grow(textarea);
      document.getElementById("notice").innerHTML = "";
      following = true;
    }
  });

  // Autoscroll follows the answer until the reader scrolls up.
  var following = true;
  function scroller() { return document.getElementById("messages"); }
  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 48; }

  function follow() {
    var el = scroller();
    if (!el) return;
    if (following) el.scrollTop = el.scrollHeight;
    var jump = document.querySelector(".jump-latest");
    if (jump) jump.hidden = following || atBottom(el);
  }

  document.addEventListener("scroll", function (evt) {
    var el = scroller();
    if (evt.target !== el) return;
    following = atBottom(el);
    var jump = document.querySelector(".jump-latest");
    if (jump) jump.hidden = following;
  }, true);

  function decorate(root) {
    root.querySelectorAll(".msg-body:not(.live) .highlight, .msg-body:not(.live) pre:not(.tool-result)").forEach(function (block) {
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
      box.appendChild(button);
    });
  }

  document.addEventListener("htmx:afterSettle", function (evt) {
    decorate(document);
    syncComposer();
    follow();
  });
  document.addEventListener("htmx:oobAfterSwap", follow);
  document.addEventListener("DOMContentLoaded", function () {
    decorate(document);
    syncComposer();
    follow();
  });
})();
