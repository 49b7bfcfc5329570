// Fabula's phone reader: turns the plain book page into one page at a time, read aloud.
// Each page has its own <audio>; the sentence whose [data-begin, data-end) holds the clip's currentTime is
// marked aria-current. While playing, a page's end turns to the next page and keeps reading.
"use strict";

(() => {
  const reader = document.getElementById("reader");
  const controls = document.getElementById("controls");
  if (!reader || !controls) return;

  const root = document.documentElement;
  const rightToLeft = root.dir === "rtl";
  const slides = Array.from(reader.querySelectorAll("[data-slide]"));
  const playButton = document.getElementById("play-button");
  const previousButton = document.getElementById("previous-button");
  const nextButton = document.getElementById("next-button");
  const announcer = document.getElementById("announcer");
  const labels = reader.dataset;
  const pageCount = slides.length - 1;

  const progress = document.createElement("div");
  progress.className = "progress";
  progress.setAttribute("aria-hidden", "true");
  const progressBar = document.createElement("div");
  progressBar.className = "progress-bar";
  progress.appendChild(progressBar);
  controls.prepend(progress);

  let current = 0;
  let playing = false;
  let frame = 0;

  const audioOf = (slide) => slide.querySelector("audio");
  const sentencesOf = (slide) => Array.from(slide.querySelectorAll(".sentence"));
  const slideName = (index) =>
    index === 0 ? labels.labelCover : labels.labelPage.replace("{page}", String(index)).replace("{total}", String(pageCount));

  function firstSlide() {
    const wanted = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    const index = slides.indexOf(wanted);
    return index >= 0 ? index : 0;
  }

  function highlight(slide, time) {
    let active = null;
    if (time !== null) {
      for (const span of sentencesOf(slide)) {
        if (Number(span.dataset.begin) <= time) active = span;
        else break;
      }
    }
    for (const span of sentencesOf(slide)) {
      if (span === active) {
        if (span.getAttribute("aria-current") !== "true") span.setAttribute("aria-current", "true");
      } else if (span.hasAttribute("aria-current")) {
        span.removeAttribute("aria-current");
      }
    }
  }

  function follow(audio) {
    const slide = slides[current];
    if (audioOf(slide) !== audio) return;
    const started = !audio.paused || audio.currentTime > 0;
    highlight(slide, started && !audio.ended ? audio.currentTime : null);
    const fraction = audio.duration > 0 ? Math.min(audio.currentTime / audio.duration, 1) : 0;
    progressBar.style.transform = `scaleX(${audio.ended ? 0 : fraction})`;
  }

  function tick() {
    const audio = audioOf(slides[current]);
    if (audio && !audio.paused) {
      follow(audio);
      frame = requestAnimationFrame(tick);
    } else {
      frame = 0;
    }
  }

  function updateControls() {
    const audio = audioOf(slides[current]);
    const next = slides[current + 1];
    const canPlay = Boolean(audio) || (current === 0 && next !== undefined && Boolean(audioOf(next)));
    playButton.disabled = !canPlay;
    playButton.dataset.state = playing ? "playing" : "paused";
    playButton.setAttribute("aria-label", playing ? labels.labelPause : labels.labelPlay);
    previousButton.disabled = current === 0;
    nextButton.disabled = current === slides.length - 1;
  }

  function start(audio) {
    playing = true;
    if (audio.ended) audio.currentTime = 0;
    audio.preload = "auto";
    const attempt = audio.play();
    if (attempt) {
      attempt.catch((error) => {
        if (error.name === "AbortError") return;
        if (audioOf(slides[current]) === audio) {
          playing = false;
          updateControls();
        }
      });
    }
    updateControls();
  }

  function show(index, { announce = true } = {}) {
    if (index < 0 || index >= slides.length) return;
    const leaving = slides[current];
    const leavingAudio = audioOf(leaving);
    if (index !== current && leavingAudio) {
      leavingAudio.pause();
      if (leavingAudio.currentTime > 0) leavingAudio.currentTime = 0;
      leavingAudio.preload = "none";
      highlight(leaving, null);
    }
    current = index;
    slides.forEach((slide, position) => { slide.hidden = position !== index; });
    const audio = audioOf(slides[index]);
    if (audio) audio.preload = "auto";
    const following = slides[index + 1];
    const image = following && following.querySelector("img[loading=lazy]");
    if (image) image.loading = "eager";
    progressBar.style.transform = "scaleX(0)";
    if (announce) announcer.textContent = slideName(index);
    history.replaceState(null, "", `#${slides[index].id}`);
    if (playing) {
      if (audio) start(audio);
      else playing = false;
    }
    updateControls();
  }

  function turn(step) {
    show(current + step);
  }

  function togglePlay() {
    const audio = audioOf(slides[current]);
    if (playing) {
      playing = false;
      if (audio) audio.pause();
      updateControls();
    } else if (audio) {
      start(audio);
    } else if (current === 0 && slides[1] && audioOf(slides[1])) {
      playing = true;
      show(1);
    }
  }

  for (const slide of slides) {
    const audio = audioOf(slide);
    if (!audio) continue;
    audio.controls = false;
    audio.addEventListener("timeupdate", () => follow(audio));
    audio.addEventListener("seeked", () => follow(audio));
    audio.addEventListener("play", () => {
      if (audioOf(slides[current]) !== audio) return;
      playing = true;
      updateControls();
      if (!frame) frame = requestAnimationFrame(tick);
    });
    audio.addEventListener("pause", () => {
      if (audioOf(slides[current]) !== audio || audio.ended) return;
      playing = false;
      updateControls();
    });
    audio.addEventListener("ended", () => {
      if (audioOf(slides[current]) !== audio) return;
      follow(audio);
      if (playing && current < slides.length - 1) show(current + 1);
      else {
        playing = false;
        updateControls();
      }
    });
  }

  playButton.addEventListener("click", togglePlay);
  previousButton.addEventListener("click", () => turn(-1));
  nextButton.addEventListener("click", () => turn(1));

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      const forward = (event.key === "ArrowRight") !== rightToLeft;
      event.preventDefault();
      turn(forward ? 1 : -1);
    } else if (event.key === " " && !event.target.closest("button, a, input, textarea, select")) {
      event.preventDefault();
      togglePlay();
    }
  });

  // Swipes: a mostly horizontal touch stroke turns the page; toward the reading direction goes forward.
  let stroke = null;
  reader.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse") return;
    stroke = { id: event.pointerId, x: event.clientX, y: event.clientY };
  });
  reader.addEventListener("pointerup", (event) => {
    if (!stroke || stroke.id !== event.pointerId) return;
    const dx = event.clientX - stroke.x;
    const dy = event.clientY - stroke.y;
    stroke = null;
    if (Math.abs(dx) < 50 || Math.abs(dx) < 1.5 * Math.abs(dy)) return;
    const forward = rightToLeft ? dx > 0 : dx < 0;
    turn(forward ? 1 : -1);
  });
  reader.addEventListener("pointercancel", () => { stroke = null; });

  root.classList.add("js");
  controls.hidden = false;
  show(firstSlide(), { announce: false });
})();
