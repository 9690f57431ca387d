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

// Passkeys (WebAuthn). The server's options and the browser's credentials cross the wire as
// JSON with their binary fields in base64url, as webauthn-rs reads and writes them.
const base64url = {
  decode(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)).buffer;
  },
  encode(buffer) {
    const bytes = String.fromCharCode(...new Uint8Array(buffer));
    return btoa(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
};

async function postJson(path, body, signal) {
  const answer = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  const json = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(json.error?.message || `the server answered ${answer.status}`);
  return json;
}

function showError(container, error) {
  const place = container.querySelector("[data-passkey-error]");
  if (!place) return;
  place.textContent = error.name === "NotAllowedError" ? "No passkey was used." : error.message;
  place.hidden = false;
}

// <div data-passkey-register>: its button makes a passkey for the signed-in person, named by
// its text input, and reloads the page that lists them.
for (const container of document.querySelectorAll("[data-passkey-register]")) {
  container.querySelector("button").addEventListener("click", async () => {
    try {
      const start = await postJson("/v1/auth/passkeys/register/start", {});
      const options = start.options.publicKey;
      options.challenge = base64url.decode(options.challenge);
      options.user.id = base64url.decode(options.user.id);
      for (const known of options.excludeCredentials || []) known.id = base64url.decode(known.id);
      const made = await navigator.credentials.create({ publicKey: options });
      const name = container.querySelector("input")?.value.trim();
      await postJson("/v1/auth/passkeys/register/finish", {
        challengeId: start.challengeId,
        ...(name ? { name } : {}),
        credential: {
          id: made.id,
          rawId: base64url.encode(made.rawId),
          type: made.type,
          response: {
            attestationObject: base64url.encode(made.response.attestationObject),
            clientDataJSON: base64url.encode(made.response.clientDataJSON),
            transports: made.response.getTransports?.() || [],
          },
          extensions: made.getClientExtensionResults(),
        },
      });
      window.location.reload();
    } catch (error) {
      showError(container, error);
    }
  });
}

// <div data-passkey-sign-in data-next="/path">: signs in with a passkey the browser offers
// (discoverable credentials, no email needed), then goes to the next page. Where the browser
// can, its passkeys are also offered in the email field's autofill (conditional mediation).
const signIn = document.querySelector("[data-passkey-sign-in]");
if (signIn && window.PublicKeyCredential) {
  let pending;
  const passkeySignIn = async (conditional) => {
    pending?.abort();
    const controller = new AbortController();
    pending = controller;
    try {
      const start = await postJson("/v1/auth/passkeys/sign-in/start", {}, controller.signal);
      const options = start.options.publicKey;
      options.challenge = base64url.decode(options.challenge);
      for (const known of options.allowCredentials || []) known.id = base64url.decode(known.id);
      const used = await navigator.credentials.get({
        publicKey: options,
        signal: controller.signal,
        ...(conditional ? { mediation: "conditional" } : {}),
      });
      const response = used.response;
      await postJson("/v1/auth/passkeys/sign-in/finish", {
        challengeId: start.challengeId,
        credential: {
          id: used.id,
          rawId: base64url.encode(used.rawId),
          type: used.type,
          response: {
            authenticatorData: base64url.encode(response.authenticatorData),
            clientDataJSON: base64url.encode(response.clientDataJSON),
            signature: base64url.encode(response.signature),
            userHandle: response.userHandle ? base64url.encode(response.userHandle) : null,
          },
          extensions: used.getClientExtensionResults(),
        },
      });
      window.location.assign(signIn.dataset.next || "/");
    } catch (error) {
      // a conditional request is aborted by the button's own: nothing to say
      if (error.name !== "AbortError") showError(signIn, error);
    }
  };
  signIn.querySelector("button").addEventListener("click", () => passkeySignIn(false));
  PublicKeyCredential.isConditionalMediationAvailable?.().then((available) => {
    if (available) passkeySignIn(true);
  });
}
