// Synthora's run viewer: live rows on the runs page, and copy buttons. No build step.
"use strict";

function followRuns() {
  const live = document.getElementById("live");
  const body = document.getElementById("runs");
  if (!live || !body || !window.EventSource) return;
  const source = new EventSource(live.dataset.source);
  source.addEventListener("open", () => live.classList.add("connected"));
  source.addEventListener("error", () => live.classList.remove("connected"));
  source.addEventListener("runs", (message) => {
    const seen = new Set(Array.from(body.querySelectorAll("tr[data-run]"), (row) => row.dataset.run));
    body.innerHTML = message.data;  // rows rendered and escaped by the server
    for (const row of body.querySelectorAll("tr[data-run]")) {
      if (!seen.has(row.dataset.run)) row.classList.add("fresh");
    }
  });
}

function copyButtons() {
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(button.dataset.copy);
        button.textContent = "copied";
      } catch {
        const range = document.createRange();  // no clipboard permission: select it instead
        range.selectNodeContents(button.previousElementSibling);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "selected";
      }
      button.classList.add("done");
    });
  }
}

followRuns();
copyButtons();
