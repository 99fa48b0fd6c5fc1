-- A user's scope: the `channels` and `limits` claims of every token issued for its API keys
-- (`tickcast user add/set --channels --limits`), as JSON (`{"channels":[...],"limits":{...}}`).
-- NULL, as every existing user gets: no restriction, what their tokens had before.
ALTER TABLE users ADD COLUMN scope TEXT;
