// The spec's JavaScript direct-upload example, run unchanged in Node.
// The harness gives it what a page would have: a base URL for relative fetches, a token,
// a service id and a file input holding a File.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const { BASE_URL, TOKEN, SERVICE_ID, FILE_PATH } = process.env;
const pageFetch = globalThis.fetch;
globalThis.fetch = (url, options) => pageFetch(new URL(url, BASE_URL), options);
const token = TOKEN;
const serviceId = SERVICE_ID;
const fileInput = { files: [new File([readFileSync(FILE_PATH)], basename(FILE_PATH))] };

// ---- from spec/media-api.md, "JavaScript Upload Example" (unchanged)
// Direct upload
const formData = new FormData();
formData.append('file', fileInput.files[0]);
formData.append('entity_type', 'service');
formData.append('entity_id', serviceId);
formData.append('title', 'Service Gallery Image');

const response = await fetch('/api/v1/drf/media/upload/', {
  method: 'POST',
  headers: {
    'Authorization': `Bearer ${token}`
  },
  body: formData
});

const media = await response.json();
// ---- end of the example

console.log(JSON.stringify({ status: response.status, media }));
