// Package traefik turns berth's routes into Traefik's dynamic configuration
// and keeps the directory that Traefik's file provider watches in step with
// them.
//
// It has three parts:
//
//   - Build, a pure function from one application's routes (App) to the typed
//     tree of Traefik's dynamic configuration (Dynamic); Render encodes that
//     tree as deterministic YAML. Every host, path, name and upstream is
//     validated again here: a value that could alter a Traefik rule is an
//     error and nothing is produced.
//   - Writer, a small adapter that puts one file per application into the
//     watched directory atomically (temp file, fsync, rename, fsync of the
//     directory), removes files of deleted applications and reconciles the
//     directory with the full list of applications so it never drifts.
//   - StaticConfig, which renders Traefik's static configuration (entry
//     points, the file provider, the ACME resolver).
//
// Files owned by berth are named "berth-<app>.yml"; any other file in the
// directory is left alone.
package traefik
