// Tegata console: small progressive enhancements; every page works without them.
// Loaded from /console/static (the Content-Security-Policy allows no inline script).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // "select all" boxes: <input type=checkbox data-select-all="name">
  for (const box of document.querySelectorAll("input[data-select-all]")) {
    box.addEventListener("change", () => {
      for (const item of document.querySelectorAll(`input[name="${box.dataset.selectAll}"]`)) {
        item.checked = box.checked;
      }
    });
  }
  // copy buttons: <button data-copy="element-id">
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.dataset.copied = "true";
        const done = button.dataset.copiedLabel;
        if (done) button.textContent = done;
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
    });
  }
  // forms that ask first: <form data-confirm="question">
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // a job's progress: <section data-job-status="/console/t/x/jobs/ID/status">, polled while
  // the page shows it running (<... data-status="running">); a finished job's page stays put
  const job = document.querySelector("[data-job-status]");
  if (job && job.querySelector('[data-status="running"]')) {
    const poll = async () => {
      try {
        const answer = await fetch(job.dataset.jobStatus, {credentials: "same-origin",
                                                            headers: {"Accept": "application/json"}});
        if (answer.ok) {
          const state = await answer.json();
          const bar = job.querySelector("progress");
          if (bar) { bar.max = state.total || 1; bar.value = state.done || 0; }
          const text = job.querySelector("[data-job-text]");
          if (text) text.textContent = state.text;
          if (state.status !== "running") { window.location.reload(); return; }
        }
      } catch (_) { /* the next poll tries again */ }
      window.setTimeout(poll, 1000);
    };
    window.setTimeout(poll, 1000);
  }
});
