FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY billing_service billing_service
COPY accounts accounts
COPY credits credits
COPY manage.py ./
RUN pip install --no-cache-dir . \
 && DATABASE_URL=postgres://build@localhost/build python manage.py collectstatic --noinput --verbosity 0
RUN useradd --system --uid 10001 billing && chown -R billing /app
USER billing
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && gunicorn billing_service.wsgi:application --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-3} --worker-class gthread --threads ${WEB_THREADS:-4} --access-logfile -"]
