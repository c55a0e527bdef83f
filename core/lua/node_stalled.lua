-- Mark a node whose attempt timed out (no ack, or no result in time): node_reserve.lua refuses it new jobs
-- until it shows life (its next heartbeat or registration clears the mark). A hung node would otherwise
-- keep receiving jobs until its heartbeat timeout, each of them waiting out a job timeout.
-- KEYS: 1 meta
-- Returns: 1 when marked, 0 when the node is gone (never recreated by this mark)
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'stalled', '1')
return 1
