-- Contoso customer-service schema. Money columns hold integer cents; dates are ISO-8601 text
-- (YYYY-MM-DD), timestamps RFC 3339 UTC text, so they sort and compare as text.
-- Every column a tool looks rows up by has an index (the reference lacked the ones on
-- SecurityLogs.customer_id and Orders.customer_id).

CREATE TABLE customers (
    id            INTEGER PRIMARY KEY,
    first_name    TEXT NOT NULL,
    last_name     TEXT NOT NULL,
    email         TEXT NOT NULL,
    phone         TEXT NOT NULL,
    address       TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    loyalty_level TEXT NOT NULL CHECK (loyalty_level IN ('Bronze', 'Silver', 'Gold', 'Platinum')),
    joined_on     TEXT NOT NULL
);

CREATE TABLE products (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    category             TEXT NOT NULL CHECK (category IN ('mobile', 'internet', 'bundle', 'addon')),
    description          TEXT NOT NULL,
    monthly_fee_cents    INTEGER NOT NULL CHECK (monthly_fee_cents >= 0),
    data_cap_gb          INTEGER,
    overage_per_gb_cents INTEGER,
    speed_tier           TEXT
);
CREATE INDEX products_category ON products (category);

CREATE TABLE subscriptions (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL REFERENCES customers (id),
    product_id      INTEGER NOT NULL REFERENCES products (id),
    start_date      TEXT NOT NULL,
    end_date        TEXT,
    status          TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'cancelled')),
    service_status  TEXT NOT NULL CHECK (service_status IN ('normal', 'slow', 'degraded', 'outage')),
    roaming_enabled INTEGER NOT NULL CHECK (roaming_enabled IN (0, 1)),
    autopay_enabled INTEGER NOT NULL CHECK (autopay_enabled IN (0, 1)),
    -- Internet line speed; NULL uses the product's tier.
    speed_tier      TEXT
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);
CREATE INDEX subscriptions_product ON subscriptions (product_id);

CREATE TABLE invoices (
    id              INTEGER PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    invoice_date    TEXT NOT NULL,
    due_date        TEXT NOT NULL,
    description     TEXT NOT NULL,
    amount_cents    INTEGER NOT NULL CHECK (amount_cents >= 0)
);
CREATE INDEX invoices_subscription ON invoices (subscription_id, invoice_date);

CREATE TABLE payments (
    id           INTEGER PRIMARY KEY,
    invoice_id   INTEGER NOT NULL REFERENCES invoices (id),
    paid_at      TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    method       TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('successful', 'failed'))
);
CREATE INDEX payments_invoice ON payments (invoice_id, status);

CREATE TABLE promotions (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL,
    description       TEXT NOT NULL,
    product_id        INTEGER REFERENCES products (id),
    min_loyalty_level TEXT NOT NULL,
    discount_percent  INTEGER NOT NULL CHECK (discount_percent BETWEEN 1 AND 100),
    start_date        TEXT NOT NULL,
    end_date          TEXT NOT NULL,
    CHECK (start_date <= end_date)
);

CREATE TABLE security_logs (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    event_type  TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    description TEXT NOT NULL
);
CREATE INDEX security_logs_customer ON security_logs (customer_id, occurred_at);

CREATE TABLE orders (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers (id),
    product_id   INTEGER REFERENCES products (id),
    item         TEXT NOT NULL,
    order_date   TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),
    status       TEXT NOT NULL,
    returned_on  TEXT
);
CREATE INDEX orders_customer ON orders (customer_id, order_date);

CREATE TABLE support_tickets (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL REFERENCES customers (id),
    subscription_id INTEGER REFERENCES subscriptions (id),
    category        TEXT NOT NULL,
    priority        TEXT NOT NULL,
    status          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    description     TEXT NOT NULL,
    opened_at       TEXT NOT NULL,
    closed_at       TEXT
);
CREATE INDEX support_tickets_customer ON support_tickets (customer_id, opened_at);
CREATE INDEX support_tickets_subscription ON support_tickets (subscription_id);

CREATE TABLE data_usage (
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    usage_date      TEXT NOT NULL,
    data_used_mb    INTEGER NOT NULL CHECK (data_used_mb >= 0),
    voice_minutes   INTEGER NOT NULL CHECK (voice_minutes >= 0),
    sms_count       INTEGER NOT NULL CHECK (sms_count >= 0),
    PRIMARY KEY (subscription_id, usage_date)
) WITHOUT ROWID;

CREATE TABLE service_incidents (
    id              INTEGER PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    reported_at     TEXT NOT NULL,
    description     TEXT NOT NULL,
    status          TEXT NOT NULL
);
CREATE INDEX service_incidents_subscription ON service_incidents (subscription_id, reported_at);

CREATE TABLE knowledge_documents (
    id       INTEGER PRIMARY KEY,
    title    TEXT NOT NULL UNIQUE,
    category TEXT NOT NULL,
    content  TEXT NOT NULL
);

-- Embeddings are computed once per (document, model) and kept, so a restart costs no API calls.
CREATE TABLE document_embeddings (
    document_id INTEGER NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    model       TEXT NOT NULL,
    vector      BLOB NOT NULL,
    PRIMARY KEY (document_id, model)
) WITHOUT ROWID;
