/* The recording page's only script (no inline script: the page's CSP allows this file and
   the pinned player only). It starts asciinema-player on the verified cast and lets the
   timeline's buttons seek it. */
(function () {
  "use strict";
  var element = document.getElementById("player");
  if (!element) {
    return;
  }
  if (typeof window.AsciinemaPlayer === "undefined") {
    var missing = document.getElementById("player-missing");
    if (missing) {
      missing.hidden = false;
    }
    return;
  }
  var player = window.AsciinemaPlayer.create(element.dataset.cast, element, {
    fit: "width",
    idleTimeLimit: 3,
    preload: true,
  });
  document.querySelectorAll("button[data-seek]").forEach(function (button) {
    button.addEventListener("click", function () {
      Promise.resolve(player.seek(parseFloat(button.dataset.seek))).then(function () {
        player.play();
      });
    });
  });
})();
