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

// <input data-slug-for="id">: as a name is typed, the input with that id shows the slug the
// server would derive from it (POST /v1/projects/generate-slug), as its placeholder.
for (const name of document.querySelectorAll("input[data-slug-for]")) {
  const slug = document.getElementById(name.dataset.slugFor);
  let pending;
  name.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      if (!slug || !name.value.trim()) return;
      try {
        const answer = await fetch("/v1/projects/generate-slug", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ name: name.value }),
        });
        if (answer.ok) slug.placeholder = (await answer.json()).slug;
      } catch {
        // the suggestion is a convenience: without it the server still derives the slug
      }
    }, 250);
  });
}
