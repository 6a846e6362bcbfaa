// The spec's presigned-upload example, run unchanged in Node (see direct_upload.mjs).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const { BASE_URL, TOKEN, SERVICE_ID, FILE_PATH, FILE_TYPE } = process.env;
const pageFetch = globalThis.fetch;
globalThis.fetch = (url, options) => pageFetch(new URL(url, BASE_URL), options);
const token = TOKEN;
const serviceId = SERVICE_ID;
const file = new File([readFileSync(FILE_PATH)], basename(FILE_PATH), { type: FILE_TYPE });

// ---- from spec/media-api.md, "Presigned Upload Example" (unchanged)
// Step 1: Get presigned URL
const uploadRequest = await fetch('/api/v1/drf/media/presigned_upload/', {
  method: 'POST',
  headers: {
    'Authorization': `Bearer ${token}`,
    'Content-Type': 'application/json'
  },
  body: JSON.stringify({
    filename: file.name,
    content_type: file.type,
    entity_type: 'service',
    entity_id: serviceId,
    file_size: file.size
  })
});

const { upload_url, upload_headers, media_id } = await uploadRequest.json();

// Step 2: Upload to presigned URL
await fetch(upload_url, {
  method: 'PUT',
  headers: upload_headers,
  body: file
});

// Step 3: Confirm upload
await fetch(`/api/v1/drf/media/${media_id}/confirm_upload/`, {
  method: 'POST',
  headers: {
    'Authorization': `Bearer ${token}`
  }
});
// ---- end of the example

console.log(JSON.stringify({ status: uploadRequest.status, media_id }));
