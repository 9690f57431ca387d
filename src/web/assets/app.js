// RelayIt dashboard: the little HTML cannot do on its own. No inline script anywhere (the
// pages' Content-Security-Policy forbids it): behaviour hangs on data- attributes.

// <button data-copy="#selector">: copies the text of the element the selector names.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.textContent = "Copied";
  } catch {
    // no clipboard (an insecure origin): select the text for a manual copy
    window.getSelection().selectAllChildren(source);
    button.textContent = "Press Ctrl+C";
  }
});

// <table data-refresh>: its rows are still on their way; reload them every few seconds, from
// the same address, until none is.
const refreshing = document.querySelector("table[data-refresh]");
if (refreshing) {
  const timer = setInterval(async () => {
    try {
      const answer = await fetch(window.location.href, { credentials: "same-origin" });
      if (!answer.ok) return;
      const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
      const table = fresh.getElementById(refreshing.id);
      if (!table) return;
      refreshing.tBodies[0].replaceWith(table.tBodies[0]);
      if (!table.hasAttribute("data-refresh")) clearInterval(timer);
    } catch {
      // offline for a moment: the next tick tries again
    }
  }, 2000);
}
