// Package webhooks delivers the log's events to outbound webhook
// subscriptions: one goroutine and one checkpointed cursor per subscription,
// in position order, signed per Standard Webhooks, retried with exponential
// backoff and jitter for a bounded time, every attempt recorded in the
// webhook_deliveries table. It also renders events as CloudEvents 1.0 JSON,
// the shape the API, the live streams and the webhooks share.
//
// Deliveries do not go through Redis: the log is the outbox and each cursor
// lives in PostgreSQL, so a Redis outage never affects them.
package webhooks

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"berth/domain"
)

// DefaultSource is the CloudEvents source of berth's events.
const DefaultSource = "/berth"

// CloudEvent is an event of the log in CloudEvents 1.0 JSON form. The
// extensions carry the log's facts: position, hash, streamversion,
// correlationid and actor ("kind:id"). CloudEvents' Integer is 32-bit, so
// the 64-bit position and stream version travel as decimal strings
// ("position":"42"), a String attribute every CloudEvents SDK accepts.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            time.Time       `json:"time"`
	Subject         string          `json:"subject"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	Position        int64           `json:"position,string"`
	Hash            string          `json:"hash"`
	StreamVersion   int64           `json:"streamversion,string"`
	CorrelationID   string          `json:"correlationid,omitempty"`
	Actor           string          `json:"actor,omitempty"`
}

// ToCloudEvent converts e, with sealed values redacted (see Redact).
func ToCloudEvent(e domain.RecordedEvent, source string) CloudEvent {
	if source == "" {
		source = DefaultSource
	}
	return CloudEvent{
		SpecVersion: "1.0", ID: e.EventID, Source: source, Type: e.Type, Time: e.RecordedAt.UTC(),
		Subject: e.StreamID, DataContentType: "application/json", Data: Redact(e.Data),
		Position: e.Position, Hash: hex.EncodeToString(e.Hash), StreamVersion: e.StreamVersion,
		CorrelationID: e.Metadata.CorrelationID, Actor: actorString(e.Metadata.Actor),
	}
}

func actorString(a domain.Actor) string {
	if a.Kind == "" && a.ID == "" {
		return ""
	}
	return a.Kind + ":" + a.ID
}

// AppendCloudEvent appends the CloudEvents JSON of e (no trailing newline)
// to buf: the same object json.Marshal(ToCloudEvent(e, source)) produces,
// written without reflection for the live streams.
func AppendCloudEvent(buf []byte, e domain.RecordedEvent, source string) []byte {
	if source == "" {
		source = DefaultSource
	}
	buf = append(buf, `{"specversion":"1.0","id":`...)
	buf = appendString(buf, e.EventID)
	buf = append(buf, `,"source":`...)
	buf = appendString(buf, source)
	buf = append(buf, `,"type":`...)
	buf = appendString(buf, e.Type)
	buf = append(buf, `,"time":"`...)
	buf = e.RecordedAt.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","subject":`...)
	buf = appendString(buf, e.StreamID)
	buf = append(buf, `,"datacontenttype":"application/json","data":`...)
	data := Redact(e.Data)
	if len(data) == 0 {
		buf = append(buf, "null"...)
	} else {
		buf = append(buf, data...)
	}
	buf = append(buf, `,"position":"`...)
	buf = strconv.AppendInt(buf, e.Position, 10)
	buf = append(buf, `","hash":"`...)
	buf = hex.AppendEncode(buf, e.Hash)
	buf = append(buf, `","streamversion":"`...)
	buf = strconv.AppendInt(buf, e.StreamVersion, 10)
	buf = append(buf, '"')
	if e.Metadata.CorrelationID != "" {
		buf = append(buf, `,"correlationid":`...)
		buf = appendString(buf, e.Metadata.CorrelationID)
	}
	if a := actorString(e.Metadata.Actor); a != "" {
		buf = append(buf, `,"actor":`...)
		buf = appendString(buf, a)
	}
	return append(buf, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping what JSON requires plus
// <, > and & (as encoding/json does) and replacing invalid UTF-8.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// Redacted replaces every sealed value in event payloads.
const Redacted = "[sealed]"

var sealedMarker = []byte(`"sealed`)

// Redact returns data with the value of every object member whose name
// starts with "sealed" (the ciphertext of secrets: env values, webhook and
// git hook secrets) replaced by Redacted. The log never holds plain secrets;
// this keeps their ciphertext from leaving berth too. Payloads without such
// a member are returned unchanged (no copy).
func Redact(data json.RawMessage) json.RawMessage {
	if !bytes.Contains(data, sealedMarker) {
		return data
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		// Not JSON we can walk: withhold it entirely rather than leak.
		return json.RawMessage(`"` + Redacted + `"`)
	}
	out, err := json.Marshal(redactValue(v))
	if err != nil {
		return json.RawMessage(`"` + Redacted + `"`)
	}
	return out
}

func redactValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if len(k) >= 6 && k[:6] == "sealed" {
				x[k] = Redacted
				continue
			}
			x[k] = redactValue(val)
		}
	case []any:
		for i := range x {
			x[i] = redactValue(x[i])
		}
	}
	return v
}
