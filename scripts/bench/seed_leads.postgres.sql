-- seed_leads.postgres.sql: :n leads straight into a migrated PostgreSQL database, for the list
-- bench (scripts/bench.sh): the same rows as seed_leads.sqlite.sql (see there). Run with psql
-- -v n=<count>; the sequence behind seq is moved past the rows.
INSERT INTO leads (seq, id, name, email, phone, status, created_at, updated_at, email_norm,
                   phone_norm, name_lower)
SELECT i, (lpad(to_hex(i), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
       name, email, phone, status, at, at, email, (30 + i % 60) || lpad(i::text, 9, '0'),
       lower(name)
FROM (SELECT i, name, replace(lower(name), ' ', '.') || i || '@example.com' AS email,
             '+' || (30 + i % 60) || ' ' || lpad(i::text, 9, '0') AS phone,
             CASE WHEN i % 100 < 50 THEN 'new' WHEN i % 100 < 80 THEN 'contacted'
                  WHEN i % 100 < 95 THEN 'replied' WHEN i % 100 < 99 THEN 'converted'
                  ELSE 'dead' END AS status,
             to_timestamp((1735689600000 + (i / 2) * 15000) / 1000.0) AS at
      FROM (SELECT i, (ARRAY['Ana', 'Bruno', 'Carla', 'Diego', 'Elena', 'Fabio', 'Gina', 'Hugo',
                             'Ines', 'Joao', 'Karin', 'Luis', 'Marta', 'Nuno', 'Olga', 'Pedro',
                             'Quinn', 'Rita', 'Sara', 'Tiago', 'Uma', 'Vera', 'Walter', 'Xavier',
                             'Yara', 'Zoe'])[1 + i % 26] || ' ' ||
                   (ARRAY['Silva', 'Santos', 'Ferreira', 'Pereira', 'Oliveira', 'Costa',
                          'Rodrigues', 'Martins', 'Jesus', 'Sousa', 'Fernandes', 'Goncalves',
                          'Gomes', 'Lopes', 'Marques', 'Alves', 'Almeida', 'Ribeiro', 'Pinto',
                          'Carvalho'])[1 + i / 26 % 20] AS name
            FROM generate_series(1::bigint, :n) AS i) AS g) AS p;
SELECT setval(pg_get_serial_sequence('leads', 'seq'), (SELECT max(seq) FROM leads));
