"""The few words the book prints itself ("The End", "Scan to read this book on a phone"), in the book's language.

Languages not listed get English.
"""

from __future__ import annotations

from webapp.book.text_shaping import primary_language

THE_END = {
    "en": "The End", "es": "Fin", "fr": "Fin", "de": "Ende", "it": "Fine", "pt": "Fim", "nl": "Einde",
    "sv": "Slut", "no": "Slutt", "da": "Slut", "fi": "Loppu", "pl": "Koniec", "cs": "Konec", "tr": "Son",
    "el": "Τέλος", "ru": "Конец", "uk": "Кінець", "ar": "النهاية", "he": "סוף", "fa": "پایان", "hi": "समाप्त",
    "th": "จบ", "vi": "Hết", "id": "Tamat", "zh": "完", "ja": "おしまい", "ko": "끝",
}

SCAN_TO_READ = {
    "en": "Scan to read this book on a phone",
    "es": "Escanea para leer este libro en el móvil",
    "fr": "Scannez pour lire ce livre sur un téléphone",
    "de": "Scannen, um dieses Buch auf dem Handy zu lesen",
    "it": "Inquadra per leggere questo libro sul telefono",
    "pt": "Escaneie para ler este livro no celular",
    "nl": "Scan om dit boek op een telefoon te lezen",
    "ru": "Отсканируйте, чтобы читать эту книгу на телефоне",
    "uk": "Скануйте, щоб читати цю книжку на телефоні",
    "el": "Σαρώστε για να διαβάσετε αυτό το βιβλίο στο κινητό",
    "tr": "Bu kitabı telefonda okumak için tarayın",
    "ar": "امسح الرمز لقراءة هذا الكتاب على الهاتف",
    "he": "סרקו כדי לקרוא את הספר בטלפון",
    "hi": "यह किताब फ़ोन पर पढ़ने के लिए स्कैन करें",
    "th": "สแกนเพื่ออ่านหนังสือเล่มนี้บนโทรศัพท์",
    "zh": "扫码在手机上阅读这本书",
    "ja": "スキャンしてスマホでこの本を読む",
    "ko": "스캔해서 휴대폰으로 이 책을 읽으세요",
}


def the_end(language: str) -> str:
    return THE_END.get(primary_language(language), THE_END["en"])


def scan_to_read(language: str) -> str:
    return SCAN_TO_READ.get(primary_language(language), SCAN_TO_READ["en"])
