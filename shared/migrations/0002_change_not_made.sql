-- Called by an event handler's closing statement when a change the handler requires did not take
-- place (a compare-and-set lost, a key already taken): the statement fails as a whole, inbox row
-- and events included, and the event is retried, whether or not the handler opened a transaction.
CREATE FUNCTION change_not_made(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'change not made: %', what USING ERRCODE = 'P0001';
END
$$;
