-- The queue an outbox row is for ("<QUEUE_PREFIX>:<QUEUE_NAME>:"): a relay publishes only its
-- own queue's rows, so deployments with different queues may share one database. Rows from
-- before this column (NULL) go to whichever relay takes them first, as they did.
ALTER TABLE outbox ADD COLUMN queue TEXT;
