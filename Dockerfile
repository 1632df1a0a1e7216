# logd's image, for docker-compose.yml. The embedded engine needs AVX2.
FROM python:3.11-slim
WORKDIR /opt/logd
COPY pyproject.toml README.md ./
COPY logd logd
COPY query query
COPY schema schema
RUN pip install --no-cache-dir -e .
EXPOSE 5514/udp 5514/tcp 6514/tcp 8080/tcp
ENTRYPOINT ["logd", "serve"]
