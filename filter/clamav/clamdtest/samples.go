package clamdtest

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"testing"
)

// EICAR is the EICAR anti-virus test string (68 bytes), assembled at run
// time so that this source file is not itself flagged by scanners.
var EICAR = []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-" + "TEST-FILE!$H+H*")

// Attachment returns a multipart/mixed message with a text part and data as
// a base64 attachment named name.
func Attachment(subject, name string, data []byte) []byte {
	const boundary = "mxgate-test-boundary"
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <sender@example.org>\r\nTo: <user@example.com>\r\nSubject: %s\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", subject, boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/octet-stream; name=\"%s\"\r\n"+
		"Content-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", boundary, name, name)
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

// Zip returns a zip archive holding data as the file name.
func Zip(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
