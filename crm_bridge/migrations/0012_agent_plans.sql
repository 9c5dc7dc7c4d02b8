-- Daily call plans set over the API (PUT /agents/{ext}/plan); they outlive restarts and take
-- precedence over the config's daily_plan.
CREATE TABLE agent_plans (
    extension   TEXT PRIMARY KEY,
    daily_plan  INTEGER NOT NULL CHECK (daily_plan >= 0),
    updated_at  TIMESTAMPTZ NOT NULL
);
