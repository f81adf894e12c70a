// Package operatorapi holds the wire rules the reference legacy agent and
// master share for the Mesos v1 operator API (POST /api/v1): content-type
// negotiation between protobuf and JSON, and answers shaped the way
// mesos-go's httpcli expects them (exact Content-Type, no body and no
// Content-Type on "no data" answers, plain-text error bodies).
//
// The rules are those of legacy/agent/http.go, factored out for the master;
// the agent still carries its own copy (see the package note there).
package operatorapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
)

// MaxRequestBody bounds a call's body.
const MaxRequestBody = 16 << 20

// Error is an answer other than 200: an HTTP status and a plain-text message
// (mesos-go puts the message into its apierrors.Error).
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Errorf builds an *Error.
func Errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// WriteError answers code with msg as text/plain.
func WriteError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(code)
	io.WriteString(w, msg)
}

// WriteErr answers err: an *Error with its code, anything else with 503.
func WriteErr(w http.ResponseWriter, err error) {
	var ae *Error
	if errors.As(err, &ae) {
		WriteError(w, ae.Code, ae.Msg)
		return
	}
	WriteError(w, http.StatusServiceUnavailable, err.Error())
}

// WriteNoData answers a call whose response class is "no data": mesos-go
// rejects a 200 that carries any Content-Type, so none is set and nothing is
// written (net/http only sniffs a Content-Type when a body is written).
func WriteNoData(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(code)
}

// WriteResponse encodes resp with codec and answers 200. mesos-go compares
// Content-Type for equality with its codec's type, so no parameters are
// added.
func WriteResponse(w http.ResponseWriter, codec encoding.Codec, resp encoding.Marshaler) error {
	var buf bytes.Buffer
	if err := codec.NewEncoder(encoding.SinkWriter(&buf)).Encode(resp); err != nil {
		WriteError(w, http.StatusServiceUnavailable, "failed to encode response: "+err.Error())
		return err
	}
	w.Header().Set("Content-Type", codec.Type.ContentType())
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf.Bytes())
	return err
}

// Negotiate picks the request and response codecs as a Mesos agent or
// master does, except that a missing Accept means "same as the request".
func Negotiate(r *http.Request) (req, resp encoding.Codec, err error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return req, resp, &Error{http.StatusBadRequest, "Expecting 'Content-Type' to be present"}
	}
	mt, _, perr := mime.ParseMediaType(ct)
	c, ok := codecs.ByMediaType[encoding.MediaType(mt)]
	if perr != nil || !ok {
		return req, resp, &Error{http.StatusUnsupportedMediaType, fmt.Sprintf(
			"Expecting 'Content-Type' of %s or %s (streaming requests are not supported)",
			codecs.MediaTypeJSON, codecs.MediaTypeProtobuf)}
	}
	req = c
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return req, req, nil
	}
	for _, want := range []encoding.Codec{req, codecs.ByMediaType[codecs.MediaTypeProtobuf], codecs.ByMediaType[codecs.MediaTypeJSON]} {
		if accepts(accept, string(want.Type)) {
			return req, want, nil
		}
	}
	return req, resp, &Error{http.StatusNotAcceptable, fmt.Sprintf(
		"Expecting 'Accept' to allow %s or %s", codecs.MediaTypeJSON, codecs.MediaTypeProtobuf)}
}

func accepts(headers []string, mediaType string) bool {
	typ, _, _ := strings.Cut(mediaType, "/")
	for _, h := range headers {
		for _, part := range strings.Split(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
					continue
				}
			}
			if mt == mediaType || mt == "*/*" || mt == typ+"/*" {
				return true
			}
		}
	}
	return false
}

// ReadCall checks method and content type, reads the body and decodes it
// into call. On error it has already answered; the caller just returns.
func ReadCall(w http.ResponseWriter, r *http.Request, call encoding.Unmarshaler) (resp encoding.Codec, ok bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("Expecting 'POST', received '%s'", r.Method))
		return resp, false
	}
	reqCodec, respCodec, err := Negotiate(r)
	if err != nil {
		WriteErr(w, err)
		return resp, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	if err != nil {
		WriteError(w, http.StatusBadRequest, "Failed to read request body: "+err.Error())
		return resp, false
	}
	if len(body) == 0 {
		WriteError(w, http.StatusBadRequest, "Failed to parse body into Call: empty body")
		return resp, false
	}
	if err := reqCodec.NewDecoder(encoding.SourceReader(bytes.NewReader(body))).Decode(call); err != nil {
		WriteError(w, http.StatusBadRequest, "Failed to parse body into Call: "+err.Error())
		return resp, false
	}
	return respCodec, true
}
