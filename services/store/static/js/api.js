// The store's business API as used by the console and the dashboard: one client per signed-in business.

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

export function createClient(businessId, apiKey) {
  const base = `/v1/businesses/${encodeURIComponent(businessId)}`;

  async function call(method, path, body) {
    const headers = { Authorization: `Bearer ${apiKey}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const detail = typeof data?.detail === "string" ? data.detail : text || response.statusText;
      throw new ApiError(response.status, detail, data);
    }
    return data;
  }

  return {
    businessId,
    get: (path) => call("GET", path),
    post: (path, body = {}) => call("POST", path, body),
    put: (path, body) => call("PUT", path, body),
    patch: (path, body) => call("PATCH", path, body),
    del: (path) => call("DELETE", path),
  };
}

/** An id for a URL path segment. */
export const seg = encodeURIComponent;
