/* PixelFlow console: a little progressive JavaScript (no library, nothing from elsewhere).
   - [data-refresh][data-live] sections re-fetch their HTML fragment every 2 s while work runs;
   - [data-autosubmit] selects submit their form;
   - the new-job form creates the job, uploads the file and starts it. */
(function () {
  "use strict";
  var PERIOD = 2000;

  function schedule(el) {
    if (el.hasAttribute("data-live")) {
      setTimeout(function () { refresh(el); }, PERIOD);
    }
  }

  function refresh(el) {
    if (!el.isConnected) return;
    // Never pull the page from under a keyboard user: wait until focus leaves the section.
    if (el.contains(document.activeElement) && document.activeElement !== document.body) {
      schedule(el);
      return;
    }
    fetch(el.getAttribute("data-refresh"), { credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (text) {
        if (!text) { schedule(el); return; }
        var template = document.createElement("template");
        template.innerHTML = text.trim();
        var fresh = template.content.firstElementChild;
        if (!fresh) { schedule(el); return; }
        el.replaceWith(fresh);
        schedule(fresh);
      })
      .catch(function () { schedule(el); });
  }

  document.querySelectorAll("[data-refresh]").forEach(schedule);

  document.querySelectorAll("[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  var form = document.getElementById("new-job");
  if (!form) return;
  var csrf = form.getAttribute("data-csrf");
  var fileInput = document.getElementById("file");
  var fileName = document.getElementById("file-name");
  var drop = document.getElementById("drop");
  var pipeline = document.getElementById("pipeline");
  var webhook = document.getElementById("webhook");
  var errorBox = document.getElementById("pipeline-error");
  var progress = document.getElementById("progress");
  var submit = document.getElementById("submit");

  function showError(message) {
    errorBox.textContent = message;
    pipeline.setAttribute("aria-invalid", "true");
    progress.textContent = "";
    submit.disabled = false;
  }

  function clearError() {
    errorBox.textContent = "";
    pipeline.removeAttribute("aria-invalid");
  }

  function showFile() {
    var file = fileInput.files[0];
    fileName.textContent = file ? file.name + " (" + file.size + " bytes)" : "";
  }

  fileInput.addEventListener("change", showFile);
  drop.addEventListener("dragover", function (event) {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) {
      fileInput.files = event.dataTransfer.files;
      showFile();
    }
  });

  document.querySelectorAll("[data-preset]").forEach(function (button) {
    button.addEventListener("click", function () {
      pipeline.value = button.getAttribute("data-pipeline");
      clearError();
    });
  });

  function call(method, url, body, contentType) {
    var headers = { "X-CSRF-Token": csrf };
    if (contentType) headers["Content-Type"] = contentType;
    return fetch(url, { method: method, headers: headers, body: body, credentials: "same-origin" });
  }

  function failure(response) {
    return response.json().then(
      function (body) { return body.error + " (" + body.code + ")"; },
      function () { return "HTTP " + response.status; }
    );
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearError();
    var file = fileInput.files[0];
    if (!file) { showError("Choose an image first."); fileInput.focus(); return; }
    var steps;
    try {
      steps = JSON.parse(pipeline.value);
    } catch (err) {
      showError("The pipeline is not valid JSON: " + err.message);
      pipeline.focus();
      return;
    }
    var request = { source_type: "s3_presigned", pipeline: steps };
    if (webhook.value.trim()) request.webhook_url = webhook.value.trim();
    submit.disabled = true;
    progress.textContent = "Creating the job…";
    call("POST", "/console/new", JSON.stringify(request), "application/json")
      .then(function (response) {
        if (!response.ok) {
          return failure(response).then(function (message) { showError(message); pipeline.focus(); });
        }
        return response.json().then(function (job) {
          progress.textContent = "Uploading " + file.name + "…";
          return call("PUT", job.upload_url, file, "application/octet-stream").then(function (put) {
            if (!put.ok) return failure(put).then(showError);
            progress.textContent = "Starting…";
            return call("POST", job.start_url, null, null).then(function (started) {
              if (!started.ok) return failure(started).then(showError);
              window.location.assign(job.page_url);
            });
          });
        });
      })
      .catch(function (err) { showError("The console could not reach the server: " + err.message); });
  });
})();
