-- Housekeeping deletes the uploads no conversation has used within a day of their upload: it finds them by age.
CREATE INDEX stored_objects_uploads ON stored_objects (created_at) WHERE kind = 'upload';
-- An upload is refused while its tenant has so many unused of the last day: it counts them.
CREATE INDEX stored_objects_tenant_uploads ON stored_objects (tenant_id, created_at) WHERE kind = 'upload';

-- The references of the messages written before `object_refs` existed, so that the uploads they used are kept.
INSERT INTO object_refs (tenant_id, object_id, conversation_id)
SELECT DISTINCT m.tenant_id, s.id, m.conversation_id
FROM messages m
CROSS JOIN LATERAL jsonb_array_elements(m.attachments) AS a
JOIN stored_objects s ON s.id::text = a ->> 'object_id' AND s.kind = 'upload' AND s.tenant_id = m.tenant_id
ON CONFLICT DO NOTHING;
