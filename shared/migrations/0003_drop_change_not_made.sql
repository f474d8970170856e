-- Event handlers write through a unit of work (shared/uow.py): one transaction, the inbox row
-- first. Nothing calls change_not_made any more.
DROP FUNCTION IF EXISTS change_not_made(text);
