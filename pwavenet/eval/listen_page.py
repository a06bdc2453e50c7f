"""The listening page's style and script (see :mod:`pwavenet.eval.listen`), kept apart from the
Python that fills the page in.

The script reads the test's data from the page's ``#test-data`` element: ``{"format", "page_id",
"seed", "key", "trials": [{"utterance", "reference", "items": [{"label", "clip", "name"}]}]}``.
Each play button plays its ``<audio>`` clip and stops every other; each slider marks its item as
rated once moved; "Save ratings" refuses until the rater's name is given and every item of
every trial is rated, then downloads ``{"format", "page_id", "seed", "rater", "created",
"trials": [{"utterance", "ratings": {system: 0-100}}]}`` with each item's name revealed (the
name is XOR-ed with the key, from offset ``31 * trial + 7 * item``).
"""

from __future__ import annotations

__all__ = ["PAGE_SCRIPT", "PAGE_STYLE", "SCALE"]

# The MUSHRA scale, left (0) to right (100), in five equal intervals.
SCALE = ("Bad", "Poor", "Fair", "Good", "Excellent")

PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:50em;margin:auto;padding:0 1em}"
    ".item{display:flex;align-items:center;gap:.5em;margin:.4em 0}"
    # rem, not em: buttons and inputs have a font size of their own
    ".item b{width:2rem}.item button{width:6rem}.item input{width:25rem;margin:0}"
    ".item output{width:2.5rem;text-align:right}"
    ".scale{display:flex;width:25rem;margin-left:9rem}"
    ".scale span{flex:1;text-align:center;border-left:1px solid #bbb;font-size:.8em;color:#555}"
    "button.playing{background:#9cf}nav{margin:1em 0}#status{min-height:1.5em;color:#a40}"
)

PAGE_SCRIPT = """
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("test-data").textContent);
  const key = Uint8Array.from(data.key.match(/../g), (h) => parseInt(h, 16));
  const sections = Array.from(document.querySelectorAll("section.trial"));
  const rated = data.trials.map((t) => t.items.map(() => false));
  const status = document.getElementById("status");
  const say = (text) => { status.textContent = text; };
  const slider = (i, j) =>
    document.querySelector(`input[data-trial="${i}"][data-item="${j}"]`);

  function reveal(hidden, offset) {
    const raw = atob(hidden);
    const bytes = Uint8Array.from(raw, (c, i) => c.charCodeAt(0) ^ key[(offset + i) % key.length]);
    return new TextDecoder().decode(bytes);
  }

  function stopAll() {
    for (const audio of document.querySelectorAll("audio")) {
      audio.pause();
      audio.currentTime = 0;
    }
    for (const b of document.querySelectorAll("button.play")) b.classList.remove("playing");
  }

  function toggle(button) {
    const audio = document.getElementById(button.dataset.clip);
    const wasPlaying = button.classList.contains("playing");
    stopAll();
    if (wasPlaying) return;
    button.classList.add("playing");
    audio.play().catch((err) => {
      button.classList.remove("playing");
      say("Cannot play this item: " + err.message);
    });
  }

  function show(index) {
    stopAll();
    sections.forEach((el, i) => { el.hidden = i !== index; });
    document.getElementById("prev").disabled = index === 0;
    document.getElementById("next").disabled = index === sections.length - 1;
    document.getElementById("position").textContent = `trial ${index + 1} of ${sections.length}`;
    show.current = index;
  }

  function unrated() {
    const missing = [];
    data.trials.forEach((t, i) => {
      const labels = t.items.filter((_, j) => !rated[i][j]).map((item) => item.label);
      if (labels.length) missing.push(`trial ${i + 1} (${labels.join(", ")})`);
    });
    return missing;
  }

  function save() {
    const rater = document.getElementById("rater").value.trim();
    if (!rater) { say("Enter your name before saving."); return; }
    const missing = unrated();
    if (missing.length) { say("Rate every item first: " + missing.join("; ") + "."); return; }
    const trials = data.trials.map((t, i) => ({
      utterance: t.utterance,
      ratings: Object.fromEntries(t.items.map((item, j) =>
        [reveal(item.name, 31 * i + 7 * j), Number(slider(i, j).value)])),
    }));
    const out = {
      format: data.format, page_id: data.page_id, seed: data.seed, rater: rater,
      created: new Date().toISOString(), trials: trials,
    };
    const blob = new Blob([JSON.stringify(out, null, 2) + "\\n"], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `ratings-${rater.replace(/[^A-Za-z0-9.-]+/g, "_")}-${data.page_id}.json`;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    say(`Saved ${link.download}: send this file to whoever runs the test.`);
  }

  for (const button of document.querySelectorAll("button.play")) {
    button.addEventListener("click", () => toggle(button));
  }
  for (const audio of document.querySelectorAll("audio")) {
    audio.addEventListener("ended", stopAll);
    audio.addEventListener("error", () => {
      console.error(`audio ${audio.id} cannot be decoded`);
      say("An item's audio cannot be played by this browser.");
    });
  }
  for (const input of document.querySelectorAll("input[type=range]")) {
    input.addEventListener("input", () => {
      rated[Number(input.dataset.trial)][Number(input.dataset.item)] = true;
      input.nextElementSibling.textContent = input.value;
    });
  }
  document.getElementById("prev").addEventListener("click", () => show(show.current - 1));
  document.getElementById("next").addEventListener("click", () => show(show.current + 1));
  document.getElementById("save").addEventListener("click", save);
  show(0);
})();
"""
