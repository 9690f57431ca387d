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
