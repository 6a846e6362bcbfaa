"""`mediasvc upload`: a command-line client that sends files and folder trees to the service
through tus, resumably, several at a time.

The pieces: `sources` (which files a command line names), `state` (the upload URL of every
unfinished file, so a re-run continues), `http` (keep-alive connections that stream a file
region), `tus` (the protocol's requests and what their answers mean), `retry` (backoff),
`transfer` (one file, start to end), `report` (progress, the summary, JSON lines), `command`
(the command line). It imports nothing of the server's but the extension table and the
size parser, so it runs anywhere the package is installed.
"""
