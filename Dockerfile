# The service's image: web (this CMD), and the Celery worker and beat (commands in docker-compose.yml).
# It copies the whole build context, less .dockerignore, so a new app needs no change here.
# tests/deploy/test_image.py builds this file set without Docker (WORKDIR, COPY, ENV and these RUN
# commands), installs it the same way and runs collectstatic and `check --deploy` on it.
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY . .
# Not editable: the dependencies and the packages (pyproject.toml) go to site-packages. The dummy
# DATABASE_URL is never connected to; without one the settings would start the embedded PostgreSQL.
RUN pip install --no-cache-dir . \
 && rm -rf build *.egg-info \
 && DATABASE_URL=postgres://build@localhost/build python manage.py collectstatic --noinput --verbosity 0
# An unprivileged user. The code stays root's (read-only to it); its one writable directory is
# /var/lib/billing, for the Celery beat schedule (a volume in docker-compose.yml).
RUN useradd --system --uid 10001 billing \
 && mkdir -p /var/lib/billing \
 && chown billing /var/lib/billing
USER billing
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec gunicorn billing_service.wsgi:application --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-3} --worker-class gthread --threads ${WEB_THREADS:-4} --access-logfile -"]
