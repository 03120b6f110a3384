//! Winners' email over SMTP (lettre), as apalis jobs on the Postgres backend.
//!
//! The outbox rows are recorded with the webhook messages they follow (`registration.won`,
//! `registration.promoted`), for tournaments with `email` set and registrants who gave an
//! address. Each second the scheduler claims the due ones under a lease and pushes them as
//! jobs; a job renders each ([`tally_schema::email::render`]: text and HTML, the claim link,
//! the deadline in the registrant's zone), sends it and records the attempt. A worker killed
//! mid-job loses nothing (the lease runs out and the email is claimed again); an email is
//! sent at least once, with a `Message-ID` derived from its message, so a mail system sees a
//! repeat as the same message. Without `TALLY_SMTP_URL` nothing is sent and emails wait.

use crate::store::PgStore;
use crate::store::email::{EmailOutcome, TakenEmail};
use apalis::prelude::{BoxDynError, Data, TaskSink};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tally_schema::resources::{Resource, ResourceKind};
use tally_schema::webhooks::EventType;

#[derive(Clone, Debug, clap::Args)]
pub struct EmailConfig {
    /// The SMTP server: `smtp://host:25` (plain), `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtps://host:465`; unset, no email is sent (it waits in the outbox).
    #[arg(long, env = "TALLY_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// SMTP user name (with `TALLY_SMTP_PASSWORD`), kept out of the URL and of logs.
    #[arg(long, env = "TALLY_SMTP_USERNAME", hide_env_values = true)]
    pub smtp_username: Option<String>,
    #[arg(long, env = "TALLY_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,
    /// How long one SMTP conversation may take, in milliseconds.
    #[arg(long, env = "TALLY_EMAIL_TIMEOUT_MS", default_value_t = 30_000)]
    pub email_timeout_ms: u64,
    /// Seconds before each retry of an email the server refused or did not take,
    /// comma-separated; it fails once all are spent.
    #[arg(
        long,
        env = "TALLY_EMAIL_RETRY_SCHEDULE",
        value_delimiter = ',',
        default_value = "30,300,1800,7200,18000,36000,36000"
    )]
    pub email_retry_schedule: Vec<f64>,
    /// Emails one scheduler tick claims at most.
    #[arg(long, env = "TALLY_EMAIL_CLAIM_MAX", default_value_t = 2000)]
    pub email_claim_max: u32,
    /// Emails per job.
    #[arg(long, env = "TALLY_EMAIL_JOB_SIZE", default_value_t = 50)]
    pub email_job_size: usize,
    /// SMTP conversations one job holds at once.
    #[arg(long, env = "TALLY_EMAIL_JOB_CONNECTIONS", default_value_t = 4)]
    pub email_job_connections: usize,
    /// An email claimed this long ago without a result is claimed again, in seconds.
    #[arg(long, env = "TALLY_EMAIL_LEASE_SECS", default_value_t = 300)]
    pub email_lease_secs: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            smtp_username: None,
            smtp_password: None,
            email_timeout_ms: 30_000,
            email_retry_schedule: vec![30.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
            email_claim_max: 2000,
            email_job_size: 50,
            email_job_connections: 4,
            email_lease_secs: 300,
        }
    }
}

/// Some emails, as one job: `(id, lease)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailJob {
    pub emails: Vec<(String, DateTime<Utc>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("SMTP settings: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

pub struct Mailer {
    store: PgStore,
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    config: EmailConfig,
    schedule: Vec<Duration>,
}

impl Mailer {
    pub fn new(store: PgStore, config: EmailConfig) -> Result<Self, EmailError> {
        let transport = match &config.smtp_url {
            None => None,
            Some(url) => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
                    .timeout(Some(Duration::from_millis(config.email_timeout_ms)));
                if let (Some(user), Some(password)) = (&config.smtp_username, &config.smtp_password)
                {
                    builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
                }
                Some(builder.build())
            }
        };
        let schedule = crate::webhooks::durations(&config.email_retry_schedule);
        Ok(Self {
            store,
            transport,
            config,
            schedule,
        })
    }

    /// Claims the due emails, as jobs; none without an SMTP server.
    pub async fn claim(&self) -> Result<Vec<EmailJob>, EmailError> {
        if self.transport.is_none() {
            return Ok(Vec::new());
        }
        let claimed = self
            .store
            .claim_emails(
                self.config.email_claim_max,
                Duration::from_secs(self.config.email_lease_secs),
            )
            .await?;
        Ok(claimed
            .chunks(self.config.email_job_size.max(1))
            .map(|chunk| EmailJob {
                emails: chunk.to_vec(),
            })
            .collect())
    }

    /// Sends a job's emails that are still its own, then records each attempt.
    #[tracing::instrument(name = "emails", skip_all, fields(emails = job.emails.len()))]
    pub async fn run(&self, job: &EmailJob) -> Result<(), EmailError> {
        let Some(transport) = &self.transport else {
            return Ok(());
        };
        let taken = self.store.take_emails(&job.emails).await?;
        let connections = self.config.email_job_connections.max(1);
        // Recorded as they finish (a few at a time when they finish together), so a worker
        // killed mid-job leaves few sent but unrecorded, which go again once the lease ends.
        let mut outcomes = futures::stream::iter(taken)
            .map(|email| async move { self.send(transport, &email).await })
            .buffer_unordered(connections)
            .ready_chunks(connections);
        while let Some(chunk) = outcomes.next().await {
            self.store.record_emails(&chunk).await?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "email_send", skip_all, fields(email = %e.id))]
    async fn send(
        &self,
        transport: &AsyncSmtpTransport<Tokio1Executor>,
        e: &TakenEmail,
    ) -> EmailOutcome {
        let result = match compose(e) {
            Ok(message) => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|err| Failure::Retry(err.to_string())),
            Err(failure) => Err(failure),
        };
        let (sent, retry_after, error, status) = match result {
            Ok(()) => (true, None, None, "sent"),
            Err(Failure::Retry(error)) => {
                let retry = self.schedule.get(e.attempts.max(0) as usize).copied();
                tracing::info!(%error, ?retry, "Email not taken by the SMTP server.");
                (false, retry, Some(error), "refused")
            }
            Err(Failure::Never(error)) => {
                tracing::warn!(%error, "Email cannot be made; not retried.");
                (false, None, Some(error), "unsendable")
            }
        };
        metrics::counter!("tally_workers_emails_total", "status" => status).increment(1);
        EmailOutcome {
            id: e.id.clone(),
            sent,
            retry_after,
            error,
        }
    }
}

enum Failure {
    /// The server did not take it: try again on the schedule.
    Retry(String),
    /// It cannot be made (the tournament stopped emailing, a bad stored address): never.
    Never(String),
}

/// The email of one outbox row, from its tournament's current settings.
fn compose(e: &TakenEmail) -> Result<lettre::Message, Failure> {
    let never = |reason: String| Failure::Never(reason);
    let Ok(Resource::Tournament(tournament)) =
        Resource::decode(ResourceKind::Tournament, e.definition.as_bytes())
    else {
        return Err(never(format!(
            "tournament '{}' does not decode",
            e.tournament
        )));
    };
    let notices = tournament
        .email
        .as_ref()
        .ok_or_else(|| never("the tournament no longer sends email".into()))?;
    let kind = EventType::parse(&e.event_type)
        .ok_or_else(|| never(format!("unknown message type '{}'", e.event_type)))?;
    let user = tally_schema::ids::UserId::try_from(e.user_id.as_str())
        .map_err(|err| never(err.to_string()))?;
    let rendered = tally_schema::email::render(
        kind,
        &tournament.id,
        &tournament.title,
        &user,
        e.deadline,
        notices,
        e.time_zone.as_deref(),
    )
    .ok_or_else(|| never(format!("'{}' sends no email", e.event_type)))?;
    let from: Mailbox = notices
        .from
        .parse()
        .map_err(|err| never(format!("from: {err}")))?;
    let to: Mailbox = e.email.parse().map_err(|err| never(format!("to: {err}")))?;
    lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject)
        // The outbox id names the message: a repeat after a lost answer is the same email.
        .message_id(Some(format!("<{}@tally>", e.id)))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|err| never(err.to_string()))
}

/// Each second: jobs for the due emails.
pub async fn schedule_emails(
    _tick: apalis_cron::Tick,
    mailer: Data<Arc<Mailer>>,
    jobs: Data<apalis_postgres::PostgresStorage<EmailJob>>,
) -> Result<(), BoxDynError> {
    let mut jobs = (*jobs).clone();
    for job in mailer.claim().await? {
        jobs.push(job).await?;
    }
    Ok(())
}

/// The apalis handler: attempts are recorded by the job; only a storage error retries it.
pub async fn run_emails(job: EmailJob, mailer: Data<Arc<Mailer>>) -> Result<(), BoxDynError> {
    mailer.run(&job).await?;
    Ok(())
}
