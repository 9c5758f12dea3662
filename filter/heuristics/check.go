package heuristics

import (
	"context"
	"strings"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/mimeview"
)

// Check names, as the pipeline's metrics and error symbols know them.
const (
	CheckName      = "heuristics"
	GTUBECheckName = "gtube"
)

// Symbols of the heuristics check.
const (
	MissingDate        = "MISSING_DATE"
	InvalidDate        = "INVALID_DATE"
	MissingMID         = "MISSING_MID"
	InvalidMsgID       = "INVALID_MSGID"
	FreemailReplyTo    = "FREEMAIL_REPLYTO"
	FromNameHasAddr    = "FROM_NAME_HAS_ADDR"
	EnvFromMismatch    = "ENVFROM_MISMATCH"
	HTMLOnly           = "MIME_HTML_ONLY"
	HTMLHiddenText     = "HTML_HIDDEN_TEXT"
	HTMLInvisibleText  = "HTML_INVISIBLE_TEXT"
	SubjExcessCaps     = "SUBJ_EXCESS_CAPS"
	BodyExcessCaps     = "BODY_EXCESS_CAPS"
	SubjExcessEncoded  = "SUBJ_EXCESS_ENCODED"
	FromExcessEncoded  = "FROM_EXCESS_ENCODED"
	ManyEncodedWords   = "MANY_ENCODED_WORDS"
	MixedCharsetHeader = "MIXED_CHARSET_HEADER"
	AttachExecutable   = "ATTACH_EXECUTABLE"
	AttachDoubleExt    = "ATTACH_DOUBLE_EXT"
	AttachExecInZip    = "ATTACH_EXEC_IN_ZIP"
	SubjScriptMismatch = "SUBJ_SCRIPT_MISMATCH"
	MixedScriptSubj    = "MIXED_SCRIPT_SUBJ"
	MixedScriptFrom    = "MIXED_SCRIPT_FROM"
	MixedScriptBody    = "MIXED_SCRIPT_BODY"
	GTUBE              = "GTUBE"
)

// Scores are the default scores, as in the package documentation.
var Scores = map[string]float64{
	MissingDate:        0.5,
	InvalidDate:        1.5,
	MissingMID:         0.5,
	InvalidMsgID:       1.0,
	FreemailReplyTo:    1.5,
	FromNameHasAddr:    1.0,
	EnvFromMismatch:    0.1,
	HTMLOnly:           0.5,
	HTMLHiddenText:     1.0,
	HTMLInvisibleText:  1.5,
	SubjExcessCaps:     1.0,
	BodyExcessCaps:     1.5,
	SubjExcessEncoded:  1.0,
	FromExcessEncoded:  0.5,
	ManyEncodedWords:   0.5,
	MixedCharsetHeader: 1.0,
	AttachExecutable:   3.0,
	AttachDoubleExt:    3.0,
	AttachExecInZip:    3.0,
	SubjScriptMismatch: 1.0,
	MixedScriptSubj:    2.0,
	MixedScriptFrom:    2.0,
	MixedScriptBody:    1.0,
	GTUBE:              1000,
}

// Check is the heuristics body check.
type Check struct{}

// Name is the check's name.
func (Check) Name() string { return CheckName }

// CheckBody evaluates the heuristics on the message's view.
func (Check) CheckBody(_ context.Context, b *filter.Body) filter.Result {
	return filter.Result{Symbols: Evaluate(b.Msg.View(), b.From)}
}

// GTUBECheck finds the GTUBE test string, which marks a message as spam
// for testing a deployment end to end.
type GTUBECheck struct{}

// Name is the check's name.
func (GTUBECheck) Name() string { return GTUBECheckName }

// gtubeString is SpamAssassin's Generic Test for Unsolicited Bulk Email.
const gtubeString = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// CheckBody looks for the GTUBE string in the text parts.
func (GTUBECheck) CheckBody(_ context.Context, b *filter.Body) filter.Result {
	if HasGTUBE(b.Msg.View()) {
		return filter.Result{Symbols: []filter.Symbol{{Name: GTUBE, Score: Scores[GTUBE], Detail: "GTUBE test string"}}}
	}
	return filter.Result{}
}

// HasGTUBE reports whether a text part (or hidden HTML text) holds the
// GTUBE string.
func HasGTUBE(v *mimeview.View) bool {
	for _, t := range v.Texts {
		if strings.Contains(t.Content, gtubeString) {
			return true
		}
	}
	for _, h := range v.Hidden {
		if strings.Contains(h.Text, gtubeString) {
			return true
		}
	}
	return false
}
