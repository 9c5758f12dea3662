// Package e2e holds the end-to-end tests of mxgate: they start the real
// binary (`mxgate serve -config FILE`) on loopback with free ports, put
// recording go-smtp backends behind it in the test process, and speak SMTP
// to it, checking the exact replies, what the backends receive, the metrics
// and the mail log.
//
// Run them with `make e2e`. When MXGATE_BIN is not set, TestMain builds the
// binary once into a temporary directory.
package e2e
