// The thresholds form: send what changed to PUT /api/thresholds, show the answer.
(function () {
  const form = document.getElementById("thresholds-form");
  if (!form) return;
  const message = document.getElementById("message");
  const token = document.getElementById("token");
  // The revision this page shows: a value changed since then is refused, not overwritten.
  const revision = Number(form.dataset.revision);

  function headers() {
    const h = {"Content-Type": "application/json"};
    if (token && token.value) h["Authorization"] = "Bearer " + token.value;
    return h;
  }

  async function send(url, method, body) {
    const response = await fetch(url, {method: method, headers: headers(), body: JSON.stringify(body)});
    const answer = await response.json();
    if (response.ok) {
      window.location.reload();
    } else {
      message.className = "error";
      message.textContent = answer.detail || ("refused: HTTP " + response.status);
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const changes = {};
    for (const input of form.querySelectorAll("input[data-current]")) {
      if (input.value !== input.dataset.current) changes[input.name] = input.value;
    }
    if (Object.keys(changes).length === 0) {
      message.className = "muted";
      message.textContent = "Nothing changed.";
      return;
    }
    send("/api/thresholds", "PUT", {changes: changes, revision: revision});
  });

  document.getElementById("reset").addEventListener("click", function () {
    if (window.confirm("Set every threshold back to its default?")) {
      send("/api/thresholds/reset", "POST", {revision: revision});
    }
  });
})();
