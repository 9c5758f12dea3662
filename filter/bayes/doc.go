// Package bayes is mxgate's statistical spam check: a message is turned
// into bounded features (words of the decoded text and of the text of its
// HTML, words of chosen header fields tagged with the field's name, the
// hosts of its URLs, and sparse pairs of nearby words), the features' ham
// and spam counts are read from a shared store, and the counts are combined
// into one probability that the message is spam. The probability becomes
// one symbol: BAYES_SPAM, BAYES_HAM or BAYES_UNSURE.
//
// Stores: Redis when the cluster has one (every node learns into the same
// counts), else a bbolt file in the node's data directory; MemStore for the
// evaluation and tests. The README's "Spam filtering" section describes what
// operators see.
package bayes

// Doc is what the tokenizer reads of a message: a small, bounded view that
// parser fills (DocFromView, from filter/mimeview's view of the message).
type Doc struct {
	// Header holds the header fields in order, names as sent, values
	// decoded (RFC 2047 words as text, unfolded).
	Header [][2]string
	// Texts are the decoded text parts, HTML already converted to text.
	Texts []string
	// URLs are the URLs found in the text and in HTML links.
	URLs []string
	// Parts are the media types of the non-multipart parts, with the
	// attachment's file name extension when it has one ("application/zip
	// .zip").
	Parts []string
	// Flags are facts of the message's structure, each a short token:
	// "html-only", "hidden:display:none" (HTML text a reader does not
	// see, by how it is hidden), "encoded-word:CHARSET".
	Flags []string
}
