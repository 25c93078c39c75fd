package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"berth/domain"
)

// QueueInfo says where a deployment stands in its host's run queue.
type QueueInfo struct {
	// Position is 1 for the next command to run, 2 for the one after, …;
	// 0 while the deployer is working on it.
	Position int
	// Waiting counts the commands not yet handed to the deployer.
	Waiting int
	// Running is true when the deployer holds the command (read, not yet
	// acknowledged).
	Running bool
}

// maxQueueScan bounds the entries QueuePosition reads.
const maxQueueScan = 10000

// QueuePosition reports the place of deploymentID in the run queue of
// topics, from Redis: the entries after the consumer group's last delivered
// id wait, in stream order; the group's pending entries are being worked on.
// It fails with domain.ErrNotFound when the deployment is neither waiting
// nor held (not relayed yet, or done); QueueInfo.Waiting is set even then.
// Safe for concurrent use; it only reads.
func QueuePosition(ctx context.Context, rdb redis.Cmdable, topics Topics, host, deploymentID string) (QueueInfo, error) {
	var info QueueInfo
	group := ConsumerName(host)
	last := "0"
	groups, err := rdb.XInfoGroups(ctx, topics.Run).Result()
	if err != nil && !isNoSuchKey(err) {
		return info, fmt.Errorf("queue of %s: %w", host, err)
	}
	for _, g := range groups {
		if g.Name == group {
			last = g.LastDeliveredID
		}
	}

	// Held by the deployer: pending entries of the group.
	pending, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: topics.Run, Group: group, Start: "-", End: "+", Count: 100}).Result()
	if err != nil && !isNoSuchKey(err) && !isNoGroup(err) {
		return info, fmt.Errorf("queue of %s: %w", host, err)
	}
	for _, p := range pending {
		entries, err := rdb.XRangeN(ctx, topics.Run, p.ID, p.ID, 1).Result()
		if err != nil {
			return info, fmt.Errorf("queue of %s: %w", host, err)
		}
		if len(entries) == 1 && entryDeployment(entries[0]) == deploymentID {
			info.Running = true
		}
	}

	// Waiting: entries after the last delivered id.
	found := 0
	start := "(" + last
	if last == "0" || last == "0-0" {
		start = "-"
	}
	for info.Waiting < maxQueueScan {
		entries, err := rdb.XRangeN(ctx, topics.Run, start, "+", 500).Result()
		if err != nil {
			if isNoSuchKey(err) {
				break
			}
			return info, fmt.Errorf("queue of %s: %w", host, err)
		}
		for _, e := range entries {
			info.Waiting++
			if found == 0 && entryDeployment(e) == deploymentID {
				found = info.Waiting
			}
		}
		if len(entries) < 500 {
			break
		}
		start = "(" + entries[len(entries)-1].ID
	}
	switch {
	case info.Running:
		return info, nil
	case found > 0:
		info.Position = found
		return info, nil
	}
	return info, fmt.Errorf("deployment %s is not in the queue of %s: %w", deploymentID, host, domain.ErrNotFound)
}

// entryDeployment returns the deployment id of a RunDeployment entry, or "".
func entryDeployment(e redis.XMessage) string {
	payload, _ := e.Values["payload"].(string)
	var cmd RunDeployment
	if json.Unmarshal([]byte(payload), &cmd) != nil {
		return ""
	}
	if _, ok := e.Values[redisstream.UUIDHeaderKey]; !ok {
		return ""
	}
	return cmd.DeploymentID
}

func isNoSuchKey(err error) bool {
	return err != nil && (errors.Is(err, redis.Nil) || strings.Contains(err.Error(), "no such key"))
}

func isNoGroup(err error) bool { return err != nil && strings.Contains(err.Error(), "NOGROUP") }
