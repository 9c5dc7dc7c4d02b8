-- A lead's tz may list several zones ("America/Adak,America/Anchorage") when its number spans
-- them (libphonenumber's zones for the number): calls keep to the narrowest window, the hours
-- allowed in every one of them. compliance.CallingHours.allowed says the same in Python.
CREATE FUNCTION dialer_within_hours_in(
    instant TIMESTAMPTZ, tz TEXT, opens TIME, closes TIME, days SMALLINT[]
) RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN opens < closes THEN
            local::time >= opens AND local::time < closes
            AND extract(isodow FROM local)::smallint = ANY (days)
        ELSE
            (local::time >= opens AND extract(isodow FROM local)::smallint = ANY (days))
            OR (local::time < closes
                AND extract(isodow FROM local - interval '1 day')::smallint = ANY (days))
        END
    FROM (SELECT instant AT TIME ZONE tz AS local) AS l
$$;

CREATE OR REPLACE FUNCTION dialer_within_hours(
    instant TIMESTAMPTZ, tz TEXT, opens TIME, closes TIME, days SMALLINT[]
) RETURNS BOOLEAN LANGUAGE sql STABLE AS $$
    SELECT bool_and(dialer_within_hours_in(instant, btrim(zone), opens, closes, days))
    FROM unnest(string_to_array(tz, ',')) AS zone
$$;
