package webui

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"berth/domain"
	"berth/handlers/commands"
	"berth/handlers/notify"
)

// NotificationCommands are the write side of notification channels;
// *commands.Handler implements it.
type NotificationCommands interface {
	CreateNotificationChannel(ctx context.Context, meta commands.Meta, cmd commands.CreateNotificationChannel) (commands.Result, string, error)
	UpdateNotificationChannel(ctx context.Context, meta commands.Meta, cmd commands.UpdateNotificationChannel) (commands.Result, error)
	DeleteNotificationChannel(ctx context.Context, meta commands.Meta, cmd commands.DeleteNotificationChannel) (commands.Result, error)
}

// NotificationReads is the read side; *notify.Reader implements it.
type NotificationReads interface {
	Channels(ctx context.Context) ([]notify.Channel, error)
	Channel(ctx context.Context, id string) (notify.Channel, error)
	Deliveries(ctx context.Context, id string, before int64, limit int) ([]notify.Attempt, error)
}

// NotificationTester sends a channel's test message; *notify.Worker
// implements it.
type NotificationTester interface {
	Test(ctx context.Context, id string) (notify.Attempt, error)
}

var (
	_ NotificationCommands = (*commands.Handler)(nil)
	_ NotificationReads    = (*notify.Reader)(nil)
	_ NotificationTester   = (*notify.Worker)(nil)
)

// Notifications are the ports of the notification endpoints; an absent
// port answers 503.
type Notifications struct {
	Commands NotificationCommands
	Reads    NotificationReads
	Tester   NotificationTester
}

// notificationRouteAccess is RouteAccess for the notification and
// monitoring routes.
func notificationRouteAccess(pattern string) (Access, bool) {
	switch pattern {
	case "GET /api/v1/notifications/rules", "GET /api/v1/notifications/channels",
		"GET /api/v1/notifications/channels/{id}", "GET /api/v1/notifications/channels/{id}/deliveries",
		"GET /api/v1/monitor/targets", "GET /api/v1/monitor/{kind}/{target}":
		return Access{Role: domain.RoleAuditor}, true
	case "POST /api/v1/notifications/channels", "PATCH /api/v1/notifications/channels/{id}",
		"DELETE /api/v1/notifications/channels/{id}", "POST /api/v1/notifications/channels/{id}/test":
		return Access{Role: domain.RoleAdmin}, true
	}
	return Access{}, false
}

func (s *Server) registerNotifications() {
	s.api("GET /api/v1/notifications/rules", s.notificationRules)
	s.api("GET /api/v1/notifications/channels", s.listChannels)
	s.api("POST /api/v1/notifications/channels", s.createChannel)
	s.api("GET /api/v1/notifications/channels/{id}", s.getChannel)
	s.api("PATCH /api/v1/notifications/channels/{id}", s.updateChannel)
	s.api("DELETE /api/v1/notifications/channels/{id}", s.deleteChannel)
	s.api("POST /api/v1/notifications/channels/{id}/test", s.testChannel)
	s.api("GET /api/v1/notifications/channels/{id}/deliveries", s.channelDeliveries)
}

// RuleList is the body of GET /api/v1/notifications/rules.
type RuleList struct {
	Rules    []notify.Rule `json:"rules"`
	Services []string      `json:"services"`
}

func (s *Server) notificationRules(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, RuleList{Rules: notify.Rules(), Services: domain.NotificationServices})
	return nil
}

// ChannelList is the body of GET /api/v1/notifications/channels.
type ChannelList struct {
	Channels []notify.Channel `json:"channels"`
}

func (s *Server) listChannels(w http.ResponseWriter, r *http.Request) error {
	reads := s.deps.Notifications.Reads
	if reads == nil {
		return errUnavailable
	}
	chs, err := reads.Channels(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ChannelList{Channels: chs})
	return nil
}

func (s *Server) getChannel(w http.ResponseWriter, r *http.Request) error {
	reads := s.deps.Notifications.Reads
	if reads == nil {
		return errUnavailable
	}
	ch, err := reads.Channel(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(ch.Version))
	writeJSON(w, http.StatusOK, ch)
	return nil
}

type createChannelRequest struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Rules    []string `json:"rules"`
	Projects []string `json:"projects"`
}

// ChannelCreatedResponse answers POST /api/v1/notifications/channels.
type ChannelCreatedResponse struct {
	Position int64  `json:"position"`
	ID       string `json:"id"`
}

func (s *Server) createChannel(w http.ResponseWriter, r *http.Request) error {
	cmds := s.deps.Notifications.Commands
	if cmds == nil {
		return errUnavailable
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req createChannelRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	res, id, err := cmds.CreateNotificationChannel(r.Context(), m, commands.CreateNotificationChannel{
		Name: req.Name, URL: req.URL, Rules: req.Rules, Projects: req.Projects})
	if err != nil {
		return err
	}
	w.Header().Set(HeaderPosition, strconv.FormatInt(res.Position, 10))
	w.Header().Set("Location", "/api/v1/notifications/channels/"+id)
	status := http.StatusCreated
	if res.Duplicate {
		w.Header().Set(HeaderReplayed, "true")
		status = http.StatusOK
	}
	writeJSON(w, status, ChannelCreatedResponse{Position: res.Position, ID: id})
	return nil
}

type updateChannelRequest struct {
	Name     *string   `json:"name"`
	URL      *string   `json:"url"`
	Rules    *[]string `json:"rules"`
	Projects *[]string `json:"projects"`
}

func (s *Server) updateChannel(w http.ResponseWriter, r *http.Request) error {
	cmds := s.deps.Notifications.Commands
	if cmds == nil {
		return errUnavailable
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	expected, err := parseIfMatch(r)
	if err != nil {
		return err
	}
	var req updateChannelRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	res, err := cmds.UpdateNotificationChannel(r.Context(), m, commands.UpdateNotificationChannel{
		ID: r.PathValue("id"), Name: req.Name, URL: req.URL, Rules: req.Rules, Projects: req.Projects, ExpectedVersion: expected})
	if err != nil {
		return err
	}
	if res.StreamVersion > 0 {
		w.Header().Set("ETag", etag(res.StreamVersion))
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

func (s *Server) deleteChannel(w http.ResponseWriter, r *http.Request) error {
	cmds := s.deps.Notifications.Commands
	if cmds == nil {
		return errUnavailable
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	res, err := cmds.DeleteNotificationChannel(r.Context(), m, commands.DeleteNotificationChannel{ID: r.PathValue("id")})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

func (s *Server) testChannel(w http.ResponseWriter, r *http.Request) error {
	tester := s.deps.Notifications.Tester
	if tester == nil {
		return errUnavailable
	}
	a, err := tester.Test(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// ChannelDeliveryPage is the body of
// GET /api/v1/notifications/channels/{id}/deliveries.
type ChannelDeliveryPage struct {
	Deliveries []notify.Attempt `json:"deliveries"`
	// NextBefore is the ?before= of the next (older) page; 0 when none.
	NextBefore int64 `json:"next_before,omitempty"`
}

func (s *Server) channelDeliveries(w http.ResponseWriter, r *http.Request) error {
	reads := s.deps.Notifications.Reads
	if reads == nil {
		return errUnavailable
	}
	id := r.PathValue("id")
	if _, err := reads.Channel(r.Context(), id); err != nil {
		return err
	}
	q := r.URL.Query()
	before, err := parseAfter(q.Get("before"))
	if err != nil {
		return malformed("before", "before must be a non-negative delivery id")
	}
	limit := 100
	if v := strings.TrimSpace(q.Get("limit")); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > notify.MaxDeliveriesPage {
			return malformed("limit", "limit must be an integer from 1 to %d", notify.MaxDeliveriesPage)
		}
	}
	ds, err := reads.Deliveries(r.Context(), id, before, limit)
	if err != nil {
		return err
	}
	page := ChannelDeliveryPage{Deliveries: ds}
	if len(ds) == limit {
		page.NextBefore = ds[len(ds)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}
