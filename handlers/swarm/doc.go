// Package swarm runs applications as Docker Swarm services: the
// domain.SwarmServicePort of a swarm, reached through the Docker Engine of one of
// its managers (the engine beside berth or a remote server's). A deployment creates or updates the application's service
// start-first, one task at a time, with rollback as the failure action, and
// waits until the swarm converged: the update completed and every task of
// the new spec runs (healthy, when its image has a HEALTHCHECK) and answers
// the application's health check path, which a short-lived probe container
// on the manager requests over the overlay network from every task,
// whichever node it runs on. A failed update is rolled back, by the swarm
// or by berth, and reported as such.
//
// The package also drives the swarm itself (initialise, adopt, join
// tokens, nodes, drain and reactivate), runs its Traefik and its own image
// registry (on the manager, mirrored on every other node), and watches it,
// reporting node state changes, moved tasks and the swarm's own rollbacks.
package swarm
