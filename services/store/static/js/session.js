// Sign-in shared by the console and the dashboard: business id + API key, kept in sessionStorage.

import { ApiError, createClient } from "./api.js";

const STORAGE_KEY = "sidebar-widgets.session";

function stored() {
  try {
    const value = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null");
    return value && typeof value.businessId === "string" && typeof value.apiKey === "string" ? value : null;
  } catch {
    return null;
  }
}

async function verified(businessId, apiKey) {
  const client = createClient(businessId, apiKey);
  const business = await client.get("");
  return { client, business };
}

/**
 * Show the sign-in form until a key works, then call onReady({client, business, apiKey}).
 * The page has #signin (a form with business-id and api-key inputs), #signin-error, #app and #signout.
 */
export async function signIn(onReady) {
  const form = document.getElementById("signin");
  const error = document.getElementById("signin-error");
  const app = document.getElementById("app");

  const enter = (session, result) => {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
    form.hidden = true;
    app.hidden = false;
    onReady({ ...result, apiKey: session.apiKey });
  };

  document.getElementById("signout").addEventListener("click", () => {
    sessionStorage.removeItem(STORAGE_KEY);
    location.reload();
  });

  const previous = stored();
  if (previous) {
    try {
      enter(previous, await verified(previous.businessId, previous.apiKey));
      return;
    } catch {
      sessionStorage.removeItem(STORAGE_KEY);
    }
  }
  form.hidden = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const session = { businessId: form.elements["business-id"].value.trim(), apiKey: form.elements["api-key"].value.trim() };
    error.textContent = "";
    try {
      enter(session, await verified(session.businessId, session.apiKey));
    } catch (exc) {
      error.textContent = exc instanceof ApiError ? `Sign-in failed: ${exc.detail}` : `Sign-in failed: ${exc.message}`;
    }
  });
}
