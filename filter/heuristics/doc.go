// Package heuristics holds mxgate's header and body heuristics: body
// checks that read the message's view (filter/mimeview, parsed once for
// every check) and emit named symbols with modest scores, each a hint
// rather than a verdict. The config's spam.scores override any score.
//
// The "heuristics" check:
//
//	symbol                 score  when
//	MISSING_DATE            0.5   no Date field
//	INVALID_DATE            1.5   a Date field that is not an RFC 5322 date
//	MISSING_MID             0.5   no Message-ID field
//	INVALID_MSGID           1.0   a Message-ID that is not <left@right>
//	FREEMAIL_REPLYTO        1.5   Reply-To at a freemail domain that is not From's domain
//	FROM_NAME_HAS_ADDR      1.0   From's display name holds an address of another domain
//	ENVFROM_MISMATCH        0.1   envelope sender's domain unrelated to From's (mailing
//	                              lists and mailing services do this too: it fires on most
//	                              of the ham of testdata/spamassassin, hence the low score)
//	MIME_HTML_ONLY          0.5   the message's text is only HTML
//	HTML_HIDDEN_TEXT        1.0   at least 200 bytes of HTML text hidden by display:none,
//	                              visibility:hidden or opacity:0 (a short preheader is not)
//	HTML_INVISIBLE_TEXT     1.5   at least 20 bytes of HTML text in a zero or tiny font, or
//	                              in the colour of its background
//	SUBJ_EXCESS_CAPS        1.0   a Subject of 10 letters or more, 70% or more capitals
//	BODY_EXCESS_CAPS        1.5   a body of 200 letters or more, 50% or more capitals
//	SUBJ_EXCESS_ENCODED     1.0   a Subject made of encoded-words that decode to plain ASCII
//	FROM_EXCESS_ENCODED     0.5   a From made of encoded-words that decode to plain ASCII
//	                              (some webmails encode every display name: lower score)
//	MANY_ENCODED_WORDS      0.5   more than 20 encoded-words in Subject and From
//	MIXED_CHARSET_HEADER    1.0   encoded-words of different charsets in one field
//	ATTACH_EXECUTABLE       3.0   an attachment with an executable extension (.exe .scr .js ...)
//	ATTACH_DOUBLE_EXT       3.0   a document extension before an executable one
//	                              (invoice.pdf.exe), or a right-to-left override in the name
//	ATTACH_EXEC_IN_ZIP      3.0   an executable name inside a zip attachment
//	SUBJ_SCRIPT_MISMATCH    1.0   the Subject's script (Latin, Cyrillic, Greek, CJK,
//	                              Arabic...) differs from the body's
//	MIXED_SCRIPT_SUBJ       2.0   a Subject word mixing Latin, Cyrillic or Greek letters
//	MIXED_SCRIPT_FROM       2.0   a From display name word mixing them
//	MIXED_SCRIPT_BODY       1.0   three or more such words in the body
//
// The "gtube" check:
//
//	GTUBE                1000.0   the GTUBE test string in a text part (as SpamAssassin)
//
// With the README's thresholds (tag 5, quarantine 8, reject 15), the
// heuristics alone tag a message only when several of them agree, or on
// an executable attachment with a second signal. TestCorpus measures the
// scores on the SpamAssassin ham and spam of testdata/.
package heuristics
