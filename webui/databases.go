package webui

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/containerlogs"
	"berth/handlers/databases"
)

// Databases is the port of the managed-database endpoints;
// *databases.Manager implements it. Without it they answer 503.
type Databases interface {
	Create(ctx context.Context, md domain.Metadata, req databases.CreateRequest) (databases.Info, error)
	List(ctx context.Context) ([]databases.Info, error)
	Get(ctx context.Context, name string) (databases.Info, error)
	Start(ctx context.Context, md domain.Metadata, name string) (databases.Info, error)
	Stop(ctx context.Context, md domain.Metadata, name string) (databases.Info, error)
	Restart(ctx context.Context, md domain.Metadata, name string) (databases.Info, error)
	ChangeVersion(ctx context.Context, md domain.Metadata, name, version string) (databases.Info, error)
	Delete(ctx context.Context, md domain.Metadata, name string, removeVolume bool) (int64, error)
	Backup(ctx context.Context, md domain.Metadata, name, storage string, scheduled bool) (domain.Backup, error)
	Restore(ctx context.Context, md domain.Metadata, name, id string, req databases.RestoreRequest) (databases.Info, error)
	Drill(ctx context.Context, md domain.Metadata, name, id string) (domain.Backup, error)
	SetSchedule(ctx context.Context, md domain.Metadata, name string, s domain.BackupSchedule) (databases.Info, error)
	RemoveSchedule(ctx context.Context, md domain.Metadata, name string) (databases.Info, error)
	AddStorage(ctx context.Context, md domain.Metadata, req databases.StorageRequest) (databases.StorageInfo, error)
	RemoveStorage(ctx context.Context, md domain.Metadata, name string) (int64, error)
	Storages(ctx context.Context) ([]databases.StorageInfo, error)
	BackupVolume(ctx context.Context, md domain.Metadata, app, volume, storage string) (domain.VolumeBackupSucceeded, error)
}

var _ Databases = (*databases.Manager)(nil)

// DatabaseLogs reads a database container's logs;
// *containerlogs.Reader implements it.
type DatabaseLogs interface {
	DatabaseLogs(ctx context.Context, name string, q containerlogs.Query, fn func(containerlogs.Line) error) error
}

func databaseRouteAccess(pattern string) (Access, bool) {
	switch pattern {
	case "GET /api/v1/databases", "GET /api/v1/databases/{name}", "GET /api/v1/databases/{name}/logs",
		"GET /api/v1/backup-storages":
		return Access{Role: domain.RoleAuditor}, true
	case "POST /api/v1/databases", "DELETE /api/v1/databases/{name}",
		"POST /api/v1/databases/{name}/start", "POST /api/v1/databases/{name}/stop", "POST /api/v1/databases/{name}/restart",
		"PUT /api/v1/databases/{name}/version",
		"POST /api/v1/databases/{name}/backups", "POST /api/v1/databases/{name}/backups/{id}/restore",
		"POST /api/v1/databases/{name}/backups/{id}/drill",
		"PUT /api/v1/databases/{name}/schedule", "DELETE /api/v1/databases/{name}/schedule",
		"POST /api/v1/apps/{app}/volumes/{volume}/backups":
		return Access{Role: domain.RoleDeployer}, true
	case "POST /api/v1/backup-storages", "DELETE /api/v1/backup-storages/{name}":
		return Access{Role: domain.RoleAdmin}, true
	}
	return Access{}, false
}

// databasesOpenAPIDocument describes the managed-database endpoints; it is
// merged into the document the server serves.
//
//go:embed databases_openapi.json
var databasesOpenAPIDocument []byte

// DatabasesOpenAPI returns the OpenAPI 3 document of the managed-database
// endpoints, merged into the document the server serves.
func DatabasesOpenAPI() []byte { return bytes.Clone(databasesOpenAPIDocument) }

func (s *Server) registerDatabases() {
	s.addOpenAPI(databasesOpenAPIDocument)
	s.api("POST /api/v1/databases", s.createDatabase)
	s.api("GET /api/v1/databases", s.listDatabases)
	s.api("GET /api/v1/databases/{name}", s.getDatabase)
	s.api("DELETE /api/v1/databases/{name}", s.deleteDatabase)
	s.api("POST /api/v1/databases/{name}/start", s.databaseAction("start"))
	s.api("POST /api/v1/databases/{name}/stop", s.databaseAction("stop"))
	s.api("POST /api/v1/databases/{name}/restart", s.databaseAction("restart"))
	s.api("PUT /api/v1/databases/{name}/version", s.changeDatabaseVersion)
	s.api("GET /api/v1/databases/{name}/logs", s.databaseLogs)
	s.api("POST /api/v1/databases/{name}/backups", s.backupDatabase)
	s.api("POST /api/v1/databases/{name}/backups/{id}/restore", s.restoreBackup)
	s.api("POST /api/v1/databases/{name}/backups/{id}/drill", s.drillBackup)
	s.api("PUT /api/v1/databases/{name}/schedule", s.setBackupSchedule)
	s.api("DELETE /api/v1/databases/{name}/schedule", s.removeBackupSchedule)
	s.api("POST /api/v1/apps/{app}/volumes/{volume}/backups", s.backupVolume)
	s.api("POST /api/v1/backup-storages", s.addBackupStorage)
	s.api("GET /api/v1/backup-storages", s.listBackupStorages)
	s.api("DELETE /api/v1/backup-storages/{name}", s.removeBackupStorage)
}

func (s *Server) dbMeta(r *http.Request) (domain.Metadata, error) {
	if s.deps.Databases == nil {
		return domain.Metadata{}, fmt.Errorf("managed databases: %w", errUnavailable)
	}
	m, err := s.meta(r)
	if err != nil {
		return domain.Metadata{}, err
	}
	return domain.Metadata{Actor: m.Actor, CorrelationID: m.CorrelationID, Origin: m.Origin}, nil
}

// DatabaseList is the body of GET /api/v1/databases.
type DatabaseList struct {
	Databases []databases.Info `json:"databases"`
}

// BackupStorageList is the body of GET /api/v1/backup-storages.
type BackupStorageList struct {
	Storages []databases.StorageInfo `json:"storages"`
}

// BackupResult is the body of a backup or a drill: the backup, or the
// reason it failed (recorded as an event too).
type BackupResult struct {
	Status string         `json:"status"` // succeeded, verified or failed
	Backup *domain.Backup `json:"backup,omitempty"`
	ID     string         `json:"id,omitempty"`
	Reason string         `json:"reason,omitempty"`
}

func (s *Server) createDatabase(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	var req databases.CreateRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	info, err := s.deps.Databases.Create(r.Context(), md, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, info)
	return nil
}

func (s *Server) listDatabases(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Databases == nil {
		return fmt.Errorf("managed databases: %w", errUnavailable)
	}
	list, err := s.deps.Databases.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, DatabaseList{Databases: list})
	return nil
}

func (s *Server) getDatabase(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Databases == nil {
		return fmt.Errorf("managed databases: %w", errUnavailable)
	}
	info, err := s.deps.Databases.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) deleteDatabase(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	removeVolume := false
	switch v := r.URL.Query().Get("remove_volume"); v {
	case "", "false", "0":
	case "true", "1":
		removeVolume = true
	default:
		return malformed("remove_volume", "remove_volume must be true or false")
	}
	if removeVolume && r.URL.Query().Get("confirm") != r.PathValue("name") {
		return domain.Invalid("confirm", "must repeat the database's name to remove its volume with it")
	}
	pos, err := s.deps.Databases.Delete(r.Context(), md, r.PathValue("name"), removeVolume)
	if err != nil {
		return err
	}
	w.Header().Set(HeaderPosition, strconv.FormatInt(pos, 10))
	writeJSON(w, http.StatusOK, WriteResponse{Position: pos, Changed: true})
	return nil
}

func (s *Server) databaseAction(action string) apiFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		md, err := s.dbMeta(r)
		if err != nil {
			return err
		}
		var info databases.Info
		switch action {
		case "start":
			info, err = s.deps.Databases.Start(r.Context(), md, r.PathValue("name"))
		case "stop":
			info, err = s.deps.Databases.Stop(r.Context(), md, r.PathValue("name"))
		default:
			info, err = s.deps.Databases.Restart(r.Context(), md, r.PathValue("name"))
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, info)
		return nil
	}
}

// VersionRequest is the body of PUT /api/v1/databases/{name}/version.
type VersionRequest struct {
	Version string `json:"version"`
}

func (s *Server) changeDatabaseVersion(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	var req VersionRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	info, err := s.deps.Databases.ChangeVersion(r.Context(), md, r.PathValue("name"), req.Version)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func backupAnswer(w http.ResponseWriter, b domain.Backup, err error, okStatus string) error {
	var be *databases.BackupError
	if errors.As(err, &be) {
		writeJSON(w, http.StatusBadGateway, BackupResult{Status: "failed", ID: be.Backup, Reason: be.Reason})
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, BackupResult{Status: okStatus, Backup: &b, ID: b.Backup})
	return nil
}

func (s *Server) backupDatabase(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	var req databases.BackupRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	b, err := s.deps.Databases.Backup(r.Context(), md, r.PathValue("name"), req.Storage, false)
	return backupAnswer(w, b, err, "succeeded")
}

func (s *Server) drillBackup(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	b, err := s.deps.Databases.Drill(r.Context(), md, r.PathValue("name"), r.PathValue("id"))
	return backupAnswer(w, b, err, "verified")
}

func (s *Server) restoreBackup(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	var req databases.RestoreRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	info, err := s.deps.Databases.Restore(r.Context(), md, r.PathValue("name"), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) setBackupSchedule(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	var req domain.BackupSchedule
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	info, err := s.deps.Databases.SetSchedule(r.Context(), md, r.PathValue("name"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) removeBackupSchedule(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	info, err := s.deps.Databases.RemoveSchedule(r.Context(), md, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) addBackupStorage(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	var req databases.StorageRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	info, err := s.deps.Databases.AddStorage(r.Context(), md, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, info)
	return nil
}

func (s *Server) listBackupStorages(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Databases == nil {
		return fmt.Errorf("managed databases: %w", errUnavailable)
	}
	list, err := s.deps.Databases.Storages(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, BackupStorageList{Storages: list})
	return nil
}

func (s *Server) removeBackupStorage(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	pos, err := s.deps.Databases.RemoveStorage(r.Context(), md, r.PathValue("name"))
	if err != nil {
		return err
	}
	w.Header().Set(HeaderPosition, strconv.FormatInt(pos, 10))
	writeJSON(w, http.StatusOK, WriteResponse{Position: pos, Changed: true})
	return nil
}

// databaseLogs answers the last ?tail=N lines (default 200) of the
// database container's logs as text ("<stream> <line>").
func (s *Server) databaseLogs(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Databases == nil || s.deps.DatabaseLogs == nil {
		return fmt.Errorf("database logs: %w", errUnavailable)
	}
	name := r.PathValue("name")
	if _, err := s.deps.Databases.Get(r.Context(), name); err != nil {
		return err
	}
	tail, err := queryInt(r, "tail", defaultTail)
	if err != nil {
		return err
	}
	if tail > containerlogs.MaxTail {
		return malformed("tail", "tail must be at most %d", containerlogs.MaxTail)
	}
	var b strings.Builder
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	err = s.deps.DatabaseLogs.DatabaseLogs(ctx, name, containerlogs.Query{Tail: int(tail)}, func(l containerlogs.Line) error {
		b.WriteString(l.Stream + " " + l.Line + "\n")
		return nil
	})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
	return nil
}

// VolumeBackupResult is the body of a volume backup.
type VolumeBackupResult struct {
	Status string                        `json:"status"` // succeeded or failed
	Backup *domain.VolumeBackupSucceeded `json:"backup,omitempty"`
	ID     string                        `json:"id,omitempty"`
	Reason string                        `json:"reason,omitempty"`
}

func (s *Server) backupVolume(w http.ResponseWriter, r *http.Request) error {
	md, err := s.dbMeta(r)
	if err != nil {
		return err
	}
	var req databases.BackupRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	b, err := s.deps.Databases.BackupVolume(r.Context(), md, r.PathValue("app"), r.PathValue("volume"), req.Storage)
	var be *databases.BackupError
	if errors.As(err, &be) {
		writeJSON(w, http.StatusBadGateway, VolumeBackupResult{Status: "failed", ID: be.Backup, Reason: be.Reason})
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, VolumeBackupResult{Status: "succeeded", Backup: &b, ID: b.Backup})
	return nil
}
