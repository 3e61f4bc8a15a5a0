// fetch('/api/stats')
