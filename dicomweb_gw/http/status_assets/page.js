// dicomweb-gw status page: a little progressive JavaScript over a page that works
// without it. Two jobs:
// 1. Every 5 s (paused while the tab is hidden), fetch this page again and replace
//    the contents of each [data-section] that changed. The server renders both, so
//    there is one renderer and one place that escapes. Focus stays on the control
//    it was on (same id), or moves to the section heading if that control is gone.
// 2. Send the action forms (C-ECHO, cancel, purge) with fetch instead of a page load,
//    and say the result in the aria-live region.
(function () {
  "use strict";

  var REFRESH_MS = 5000;
  var timer = null;
  var refreshing = null;  // the refresh under way (a promise), if any
  var again = false;
  var note = document.getElementById("refresh-note");
  var result = document.getElementById("action-result");

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function clock() {
    return new Date().toLocaleTimeString([], { hour12: false });
  }

  function redraw(fresh) {
    var token = fresh.querySelector('meta[name="csrf-token"]');
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (token && meta) {
      meta.setAttribute("content", token.getAttribute("content"));
    }
    var sections = fresh.querySelectorAll("[data-section]");
    for (var i = 0; i < sections.length; i++) {
      var current = document.getElementById(sections[i].id);
      if (!current || current.innerHTML === sections[i].innerHTML) {
        continue;  // unchanged: leave it alone (an alert is not announced again)
      }
      var focused = document.activeElement;
      var hadFocus = focused && focused !== document.body && current.contains(focused);
      var focusedId = hadFocus ? focused.id : "";
      current.innerHTML = sections[i].innerHTML;
      if (hadFocus) {
        var same = focusedId ? document.getElementById(focusedId) : null;
        var heading = current.querySelector("h2");
        if (same) {
          same.focus();
        } else if (heading) {
          heading.focus();
        }
      }
    }
  }

  function refresh() {
    if (refreshing) {
      // One more right after: an action's result must not wait for the next tick.
      again = true;
      return refreshing;
    }
    refreshing = load().then(function () {
      refreshing = null;
      if (again) {
        again = false;
        return refresh();
      }
    });
    return refreshing;
  }

  function load() {
    return fetch(window.location.href, {
      headers: { "Accept": "text/html" },
      cache: "no-store",
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    }).then(function (text) {
      redraw(new DOMParser().parseFromString(text, "text/html"));
      note.textContent = "Updated every 5 seconds; last update " + clock() + ".";
      note.classList.remove("stale");
    }).catch(function (error) {
      note.textContent = "Could not refresh (" + error.message + ") at " + clock() +
        "; the numbers below may be old.";
      note.classList.add("stale");
    });
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = null;
    if (!document.hidden) {
      timer = window.setTimeout(function () {
        refresh().then(schedule);
      }, REFRESH_MS);
    }
  }

  function say(message, ok) {
    // Emptied first: a screen reader announces the same message twice (two C-ECHOs)
    // only if the region's text changes in between.
    result.textContent = "";
    result.className = "result " + (ok ? "result-ok" : "result-error");
    window.setTimeout(function () {
      result.textContent = message;
    }, 100);
  }

  function send(form) {
    var button = form.querySelector("button");
    var name = button ? (button.getAttribute("aria-label") || button.textContent) : "action";
    // Not button.disabled: a disabled button drops the keyboard focus.
    form.setAttribute("data-busy", "true");
    return fetch(form.action, {
      method: "POST",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrfToken() },
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().then(function (body) {
        say(body.message || (name + ": HTTP " + response.status), !!body.ok);
      }, function () {
        say(name + " failed: HTTP " + response.status + " " + response.statusText, false);
      });
    }, function (error) {
      say(name + " failed: the gateway did not answer (" + error.message + ")", false);
    }).then(function () {
      form.removeAttribute("data-busy");
      return refresh();
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("action")) {
      return;
    }
    event.preventDefault();
    if (form.hasAttribute("data-busy")) {
      return;  // already sent; the answer is on its way
    }
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      return;
    }
    send(form);
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      window.clearTimeout(timer);
      timer = null;
    } else {
      refresh().then(schedule);
    }
  });

  note.textContent = "Updated every 5 seconds.";
  schedule();
})();
